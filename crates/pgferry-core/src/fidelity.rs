//! Decisions for what logical replication does not carry: the order in which
//! materialized views are refreshed, and which large objects differ.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// The order to refresh materialized views in: each after every view it reads
/// (directly or through plain views). `views[i]` is a view's id and the ids it
/// reads; ids of views not in the list are ignored. Returns indexes into
/// `views`, keeping the given order where dependencies allow.
pub fn refresh_order(views: &[(u32, Vec<u32>)]) -> Vec<usize> {
    let position: HashMap<u32, usize> = views.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
    let mut done = vec![false; views.len()];
    let mut order = Vec::with_capacity(views.len());
    while order.len() < views.len() {
        let before = order.len();
        for (i, (_, reads)) in views.iter().enumerate() {
            let ready = !done[i] && reads.iter().filter_map(|r| position.get(r)).all(|&j| done[j] || j == i);
            if ready {
                done[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            // A cycle PostgreSQL does not allow: the rest in the given order.
            order.extend((0..views.len()).filter(|i| !done[*i]));
            break;
        }
    }
    order
}

/// How the large objects of two databases differ, by OID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LargeObjectDifferences {
    /// On the source only.
    pub missing: Vec<u32>,
    /// On the target only.
    pub extra: Vec<u32>,
    /// On both, with different contents.
    pub changed: Vec<u32>,
}

impl LargeObjectDifferences {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.changed.is_empty()
    }
}

/// Compares per-object digests (OID to digest) of the source and the target.
pub fn large_object_differences(
    source: &BTreeMap<u32, String>,
    target: &BTreeMap<u32, String>,
) -> LargeObjectDifferences {
    let mut differences = LargeObjectDifferences::default();
    for (oid, digest) in source {
        match target.get(oid) {
            None => differences.missing.push(*oid),
            Some(other) if other != digest => differences.changed.push(*oid),
            Some(_) => {}
        }
    }
    differences.extra = target.keys().filter(|oid| !source.contains_key(oid)).copied().collect();
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_come_after_the_views_they_read() {
        // 30 reads 20, which reads 10; 40 reads nothing listed.
        let views = vec![(30, vec![20, 5]), (20, vec![10]), (40, vec![99]), (10, vec![])];
        let order = refresh_order(&views);
        let pos = |id: u32| order.iter().position(|&i| views[i].0 == id).unwrap();
        assert!(pos(10) < pos(20) && pos(20) < pos(30), "{order:?}");
        assert_eq!(order.len(), 4);
        assert_eq!(refresh_order(&[(1, vec![]), (2, vec![])]), vec![0, 1], "independent views keep their order");
        assert_eq!(refresh_order(&[(1, vec![2]), (2, vec![1])]).len(), 2, "a cycle still lists every view once");
    }

    #[test]
    fn large_objects_are_missing_extra_or_changed() {
        let source = BTreeMap::from([(1, "a".to_string()), (2, "b".to_string()), (3, "c".to_string())]);
        let target = BTreeMap::from([(2, "b".to_string()), (3, "x".to_string()), (4, "d".to_string())]);
        let d = large_object_differences(&source, &target);
        assert_eq!(d, LargeObjectDifferences { missing: vec![1], extra: vec![4], changed: vec![3] });
        assert!(!d.is_empty());
        assert!(large_object_differences(&source, &source).is_empty());
    }
}
