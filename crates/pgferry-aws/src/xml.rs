//! The little XML pgferry reads itself: the answers of the EC2 Query API
//! ([`crate::ec2`]), elements holding either text or elements, never both.
//!
//! The answer is read into a tree of [`Node`]s with `xmlparser` (the tokenizer
//! the SDK's own XML decoder uses); attributes, comments and namespaces are
//! ignored, and the five predefined entities and character references are
//! decoded.

/// One element: its local name, its text and its child elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Node>,
}

impl Node {
    /// The first child element named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child named `name`, if there is one.
    pub(crate) fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The `<item>` elements of the child named `list` (EC2's lists).
    pub(crate) fn items<'a>(&'a self, list: &str) -> impl Iterator<Item = &'a Node> {
        self.child(list).into_iter().flat_map(|l| l.children.iter().filter(|c| c.name == "item"))
    }

    /// The first element named `name` anywhere below this one, depth first.
    pub(crate) fn find(&self, name: &str) -> Option<&Node> {
        self.children.iter().find_map(|c| if c.name == name { Some(c) } else { c.find(name) })
    }
}

/// The document's root element.
pub(crate) fn parse(text: &str) -> Result<Node, String> {
    use xmlparser::{ElementEnd, Token, Tokenizer};
    let mut stack: Vec<Node> = Vec::new();
    for token in Tokenizer::from(text) {
        match token.map_err(|e| e.to_string())? {
            Token::ElementStart { local, .. } => stack.push(Node { name: local.to_string(), ..Node::default() }),
            Token::ElementEnd { end: ElementEnd::Open, .. } => {}
            Token::ElementEnd { end: ElementEnd::Close(..) | ElementEnd::Empty, .. } => {
                let done = stack.pop().ok_or("an end tag without its start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Token::Text { text } | Token::Cdata { text, .. } => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&unescape(text.as_str())?);
                }
            }
            _ => {}
        }
    }
    Err("the document ends before its root element does".into())
}

fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let end = rest[amp..].find(';').ok_or_else(|| format!("an unterminated entity in {text:?}"))? + amp;
        let entity = &rest[amp + 1..end];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => match entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                Some(hex) => u32::from_str_radix(hex, 16).ok().and_then(char::from_u32),
                None => entity.strip_prefix('#').and_then(|d| d.parse().ok()).and_then(char::from_u32),
            },
        };
        out.push(decoded.ok_or_else(|| format!("an unknown entity &{entity};"))?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_elements_lists_and_entities() {
        let doc = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <DescribeSecurityGroupsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
              <securityGroupInfo>
                <item><groupId>sg-1</groupId><groupName>a &amp; b &#x41;&#66;</groupName><tagSet/></item>
                <item><groupId>sg-2</groupId><![CDATA[<raw>]]></item>
              </securityGroupInfo>
            </DescribeSecurityGroupsResponse>"#,
        )
        .unwrap();
        assert_eq!(doc.name, "DescribeSecurityGroupsResponse");
        let items: Vec<&Node> = doc.items("securityGroupInfo").collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].text_of("groupName"), Some("a & b AB"));
        assert_eq!(items[0].items("tagSet").count(), 0);
        assert_eq!(items[1].text.trim(), "<raw>");
        assert_eq!(doc.find("groupId").map(|n| n.text.as_str()), Some("sg-1"));
    }

    #[test]
    fn refuses_broken_documents() {
        assert!(parse("<a><b>x</b>").is_err());
        assert!(parse("<a>&nope;</a>").is_err());
        assert!(parse("").is_err());
    }
}
