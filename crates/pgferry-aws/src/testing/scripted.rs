//! A control plane that answers from a script where moto cannot, and from the
//! wrapped one (moto through the real SDK client) everywhere else.
//!
//! The script can: fail a call before it reaches the cloud, or after (the call
//! took effect but pgferry never heard back, as when it is killed); throttle a
//! call a number of times; make an instance or snapshot pass through states
//! (`creating`, `modifying`, `backing-up`...) or a parameter group through
//! `pending-reboot`; alter what a describe returns (settings moto does not
//! model); serve log files page by page; hold a Route53 change `PENDING`; make
//! a Blue/Green deployment pass through states (`PROVISIONING`, a switchover in
//! progress, rolled back or failed).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use pgferry_pgoutput::Lsn;

use crate::control::{CloudError, CloudResult, ControlPlane};
use crate::encrypt::{SeedMark, SeedSide};
use crate::model::{
    BlueGreen, BlueGreenRequest, GroupRequest, Ingress, Instance, Key, LogFile, LogPortion, Modification, Parameter,
    Record, ReplicaRequest, RestoreRequest, SecurityGroup, Snapshot,
};
use pgferry_core::instance::{plan, InstancePlan, Selection, SourceDatabase, UnknownDatabase};

enum Fault {
    Before(CloudError),
    After(CloudError),
    /// This call goes through: the faults queued after it hit later calls.
    Pass,
}

type Tweak = Box<dyn Fn(&mut Instance)>;

#[derive(Default)]
struct Script {
    faults: HashMap<&'static str, VecDeque<Fault>>,
    instance_states: HashMap<String, VecDeque<String>>,
    parameter_states: HashMap<String, VecDeque<String>>,
    snapshot_states: HashMap<String, VecDeque<String>>,
    blue_green_states: HashMap<String, VecDeque<String>>,
    change_states: VecDeque<String>,
    tweaks: HashMap<String, Vec<Tweak>>,
    pending_reboot: Vec<String>,
    logs: HashMap<String, Vec<(LogFile, String)>>,
    page_size: usize,
}

/// The wrapped control plane, overridden per script. Every call is recorded.
pub struct Scripted<C> {
    inner: C,
    script: RefCell<Script>,
    calls: RefCell<Vec<&'static str>>,
    blue_greens: RefCell<Vec<BlueGreenRequest>>,
}

impl<C: ControlPlane> Scripted<C> {
    pub fn new(inner: C) -> Self {
        Scripted {
            inner,
            script: RefCell::new(Script { page_size: 64, ..Script::default() }),
            calls: RefCell::default(),
            blue_greens: RefCell::default(),
        }
    }

    /// The next call of `action` fails with `code` without reaching the cloud.
    pub fn fail_before(&self, action: &'static str, code: &str) -> &Self {
        let fault = Fault::Before(CloudError::new(action, Some(code), "scripted failure"));
        self.script.borrow_mut().faults.entry(action).or_default().push_back(fault);
        self
    }

    /// The next call of `action` reaches the cloud, then fails as if pgferry died.
    pub fn fail_after(&self, action: &'static str) -> &Self {
        let fault = Fault::After(CloudError::new(action, None, "scripted: the answer was lost"));
        self.script.borrow_mut().faults.entry(action).or_default().push_back(fault);
        self
    }

    /// The next `times` calls of `action` go through; faults queued after hit later calls.
    pub fn pass(&self, action: &'static str, times: usize) -> &Self {
        let mut script = self.script.borrow_mut();
        let queue = script.faults.entry(action).or_default();
        queue.extend((0..times).map(|_| Fault::Pass));
        self
    }

    /// The next `times` calls of `action` are throttled.
    pub fn throttle(&self, action: &'static str, times: usize) -> &Self {
        for _ in 0..times {
            self.fail_before(action, "Throttling");
        }
        self
    }

    /// The next describes of instance `id` report these states, then the real one.
    pub fn instance_states(&self, id: &str, states: &[&str]) -> &Self {
        self.script.borrow_mut().instance_states.insert(id.to_owned(), states.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The next describes of instance `id` report its parameter group in these apply states.
    pub fn parameter_states(&self, id: &str, states: &[&str]) -> &Self {
        self.script.borrow_mut().parameter_states.insert(id.to_owned(), states.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn snapshot_states(&self, id: &str, states: &[&str]) -> &Self {
        self.script.borrow_mut().snapshot_states.insert(id.to_owned(), states.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The next describes of Blue/Green deployment `name` report these states, then the real one.
    pub fn blue_green_states(&self, name: &str, states: &[&str]) -> &Self {
        self.script
            .borrow_mut()
            .blue_green_states
            .insert(name.to_owned(), states.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The next Route53 change status reads report these, then the real one.
    pub fn change_states(&self, states: &[&str]) -> &Self {
        self.script.borrow_mut().change_states = states.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Instance `id`'s parameter group is `pending-reboot` until it is rebooted.
    pub fn pending_reboot(&self, id: &str) -> &Self {
        self.script.borrow_mut().pending_reboot.push(id.to_owned());
        self
    }

    /// Every describe of instance `id` is altered by `tweak`.
    pub fn tweak(&self, id: &str, tweak: impl Fn(&mut Instance) + 'static) -> &Self {
        self.script.borrow_mut().tweaks.entry(id.to_owned()).or_default().push(Box::new(tweak));
        self
    }

    /// Instance `id` has these log files (name, content), served `page_size` bytes a page.
    pub fn logs(&self, id: &str, files: &[(&str, &str)], page_size: usize) -> &Self {
        let mut script = self.script.borrow_mut();
        script.page_size = page_size;
        let files = files
            .iter()
            .enumerate()
            .map(|(n, (name, text))| {
                let file = LogFile { name: name.to_string(), last_written: n as i64, size: text.len() as i64 };
                (file, text.to_string())
            })
            .collect();
        script.logs.insert(id.to_owned(), files);
        self
    }

    /// The Blue/Green deployments asked for (those that reached the cloud).
    pub fn blue_green_requests(&self) -> Vec<BlueGreenRequest> {
        self.blue_greens.borrow().clone()
    }

    /// How many times `action` was called (including scripted failures).
    pub fn calls(&self, action: &str) -> usize {
        self.calls.borrow().iter().filter(|a| **a == action).count()
    }

    async fn around<T>(
        &self,
        action: &'static str,
        call: impl std::future::Future<Output = CloudResult<T>>,
    ) -> CloudResult<T> {
        self.calls.borrow_mut().push(action);
        let fault = self.script.borrow_mut().faults.get_mut(action).and_then(VecDeque::pop_front);
        match fault {
            Some(Fault::Before(err)) => Err(err),
            Some(Fault::After(err)) => {
                call.await?;
                Err(err)
            }
            Some(Fault::Pass) | None => call.await,
        }
    }

    fn next_state(map: &mut HashMap<String, VecDeque<String>>, id: &str) -> Option<String> {
        map.get_mut(id).and_then(VecDeque::pop_front)
    }
}

impl<C: ControlPlane> ControlPlane for Scripted<C> {
    async fn describe_instance(&self, id: &str) -> CloudResult<Option<Instance>> {
        let found = self.around("rds:DescribeDBInstances", self.inner.describe_instance(id)).await?;
        let mut script = self.script.borrow_mut();
        Ok(found.map(|mut instance| {
            if let Some(state) = Self::next_state(&mut script.instance_states, id) {
                instance.status = state;
            }
            if let (Some(state), Some(group)) =
                (Self::next_state(&mut script.parameter_states, id), instance.parameter_group.as_mut())
            {
                group.apply_status = state;
            }
            if script.pending_reboot.iter().any(|p| p == id) {
                if let Some(group) = instance.parameter_group.as_mut() {
                    group.apply_status = "pending-reboot".into();
                }
            }
            for tweak in script.tweaks.get(id).into_iter().flatten() {
                tweak(&mut instance);
            }
            instance
        }))
    }

    async fn describe_parameter(&self, group: &str, name: &str) -> CloudResult<Option<Parameter>> {
        self.around("rds:DescribeDBParameters", self.inner.describe_parameter(group, name)).await
    }

    async fn describe_snapshot(&self, id: &str) -> CloudResult<Option<Snapshot>> {
        let found = self.around("rds:DescribeDBSnapshots", self.inner.describe_snapshot(id)).await?;
        let state = Self::next_state(&mut self.script.borrow_mut().snapshot_states, id);
        Ok(found.map(|mut snapshot| {
            if let Some(state) = state {
                snapshot.status = state;
            }
            snapshot
        }))
    }

    async fn create_snapshot(&self, instance: &str, snapshot: &str) -> CloudResult<Snapshot> {
        self.around("rds:CreateDBSnapshot", self.inner.create_snapshot(instance, snapshot)).await
    }

    async fn copy_snapshot(&self, source: &str, copy: &str, kms_key_arn: &str) -> CloudResult<Snapshot> {
        self.around("rds:CopyDBSnapshot", self.inner.copy_snapshot(source, copy, kms_key_arn)).await
    }

    async fn delete_snapshot(&self, id: &str) -> CloudResult<()> {
        self.around("rds:DeleteDBSnapshot", self.inner.delete_snapshot(id)).await
    }

    async fn restore_instance(&self, request: &RestoreRequest) -> CloudResult<Instance> {
        self.around("rds:RestoreDBInstanceFromDBSnapshot", self.inner.restore_instance(request)).await
    }

    async fn modify_instance(&self, id: &str, change: &Modification) -> CloudResult<Instance> {
        self.around("rds:ModifyDBInstance", self.inner.modify_instance(id, change)).await
    }

    async fn reboot_instance(&self, id: &str) -> CloudResult<Instance> {
        let rebooted = self.around("rds:RebootDBInstance", self.inner.reboot_instance(id)).await?;
        self.script.borrow_mut().pending_reboot.retain(|p| p != id);
        Ok(rebooted)
    }

    async fn create_read_replica(&self, request: &ReplicaRequest) -> CloudResult<Instance> {
        self.around("rds:CreateDBInstanceReadReplica", self.inner.create_read_replica(request)).await
    }

    async fn delete_instance(&self, id: &str) -> CloudResult<()> {
        self.around("rds:DeleteDBInstance", self.inner.delete_instance(id)).await
    }

    async fn list_log_files(&self, instance: &str) -> CloudResult<Vec<LogFile>> {
        let scripted: Option<Vec<LogFile>> =
            self.script.borrow().logs.get(instance).map(|files| files.iter().map(|(f, _)| f.clone()).collect());
        match scripted {
            Some(files) => self.around("rds:DescribeDBLogFiles", async { Ok(files) }).await,
            None => self.around("rds:DescribeDBLogFiles", self.inner.list_log_files(instance)).await,
        }
    }

    async fn download_log_portion(&self, instance: &str, file: &str, marker: &str) -> CloudResult<LogPortion> {
        let page = {
            let script = self.script.borrow();
            let text =
                script.logs.get(instance).and_then(|files| files.iter().find(|(f, _)| f.name == file)).map(|(_, t)| t);
            text.map(|text| {
                let start: usize = marker.parse().unwrap_or(0).min(text.len());
                let end = (start + script.page_size).min(text.len());
                LogPortion {
                    data: text[start..end].to_owned(),
                    marker: Some(end.to_string()),
                    pending: end < text.len(),
                }
            })
        };
        match page {
            Some(page) => self.around("rds:DownloadDBLogFilePortion", async { Ok(page) }).await,
            None => {
                self.around("rds:DownloadDBLogFilePortion", self.inner.download_log_portion(instance, file, marker))
                    .await
            }
        }
    }

    async fn describe_key(&self, key: &str) -> CloudResult<Key> {
        self.around("kms:DescribeKey", self.inner.describe_key(key)).await
    }

    async fn get_record(&self, zone: &str, name: &str) -> CloudResult<Option<Record>> {
        self.around("route53:ListResourceRecordSets", self.inner.get_record(zone, name)).await
    }

    async fn upsert_cname(&self, zone: &str, name: &str, record: &Record) -> CloudResult<String> {
        self.around("route53:ChangeResourceRecordSets", self.inner.upsert_cname(zone, name, record)).await
    }

    async fn proxies_targeting(&self, instance: &str) -> CloudResult<Vec<String>> {
        self.around("rds:DescribeDBProxyTargets", self.inner.proxies_targeting(instance)).await
    }

    async fn describe_blue_green(&self, name: &str) -> CloudResult<Option<BlueGreen>> {
        let found = self.around("rds:DescribeBlueGreenDeployments", self.inner.describe_blue_green(name)).await?;
        Ok(found.map(|mut deployment| {
            if let Some(state) = Self::next_state(&mut self.script.borrow_mut().blue_green_states, name) {
                deployment.status = state;
            }
            deployment
        }))
    }

    async fn create_blue_green(&self, request: &BlueGreenRequest) -> CloudResult<BlueGreen> {
        let recorded = async {
            let created = self.inner.create_blue_green(request).await?;
            self.blue_greens.borrow_mut().push(request.clone());
            Ok(created)
        };
        self.around("rds:CreateBlueGreenDeployment", recorded).await
    }

    async fn switchover_blue_green(&self, id: &str, timeout_seconds: i32) -> CloudResult<BlueGreen> {
        self.around("rds:SwitchoverBlueGreenDeployment", self.inner.switchover_blue_green(id, timeout_seconds)).await
    }

    async fn delete_blue_green(&self, id: &str) -> CloudResult<()> {
        self.around("rds:DeleteBlueGreenDeployment", self.inner.delete_blue_green(id)).await
    }

    async fn find_security_group(&self, vpc_id: &str, name: &str) -> CloudResult<Option<SecurityGroup>> {
        self.around("ec2:DescribeSecurityGroups", self.inner.find_security_group(vpc_id, name)).await
    }

    async fn describe_security_group(&self, id: &str) -> CloudResult<Option<SecurityGroup>> {
        self.around("ec2:DescribeSecurityGroups", self.inner.describe_security_group(id)).await
    }

    async fn create_security_group(&self, request: &GroupRequest) -> CloudResult<String> {
        self.around("ec2:CreateSecurityGroup", self.inner.create_security_group(request)).await
    }

    async fn allow_ingress(&self, group_id: &str, rule: &Ingress) -> CloudResult<()> {
        self.around("ec2:AuthorizeSecurityGroupIngress", self.inner.allow_ingress(group_id, rule)).await
    }

    async fn delete_security_group(&self, id: &str) -> CloudResult<()> {
        self.around("ec2:DeleteSecurityGroup", self.inner.delete_security_group(id)).await
    }

    async fn change_status(&self, change: &str) -> CloudResult<String> {
        let status = self.around("route53:GetChange", self.inner.change_status(change)).await?;
        Ok(self.script.borrow_mut().change_states.pop_front().unwrap_or(status))
    }
}

/// A database side that records what it was asked, over an instance whose
/// databases are named (with the templates and `rdsadmin` RDS has beside them).
pub struct RecordingSeed {
    pub mark: SeedMark,
    /// The instance's own databases.
    pub databases: Vec<String>,
    /// The databases prepared, in order.
    pub prepared: RefCell<Vec<String>>,
    /// The databases started, in order, with the position each started from.
    pub started: RefCell<Vec<(String, Lsn)>>,
    /// The next `prepare` of this database fails (once).
    pub fail_prepare: RefCell<Option<String>>,
    /// The next `start_from` of this database fails (once).
    pub fail_start: RefCell<Option<String>>,
    /// Databases the restored target holds beside `databases` that the source
    /// does not list: created after the last `prepare`, or dropped since.
    pub only_on_target: RefCell<Vec<String>>,
    /// Databases of `databases` that allow no connections (`datallowconn` false).
    pub closed: RefCell<Vec<String>>,
}

impl RecordingSeed {
    /// An instance with one database, `app`.
    pub fn new(consistent_point: Lsn) -> Self {
        RecordingSeed::of(consistent_point, &["app"])
    }

    pub fn of(consistent_point: Lsn, databases: &[&str]) -> Self {
        RecordingSeed {
            mark: SeedMark { slot: "pgferry_main".into(), consistent_point },
            databases: databases.iter().map(|d| (*d).to_owned()).collect(),
            prepared: RefCell::default(),
            started: RefCell::default(),
            fail_prepare: RefCell::default(),
            fail_start: RefCell::default(),
            only_on_target: RefCell::default(),
            closed: RefCell::default(),
        }
    }
}

fn scripted_failure(armed: &RefCell<Option<String>>, database: &str) -> pgferry::Result<()> {
    if armed.borrow().as_deref() == Some(database) {
        armed.borrow_mut().take();
        return Err(pgferry::Error::new(pgferry::ErrorKind::Connection, "scripted: the database is unreachable"));
    }
    Ok(())
}

impl SeedSide for RecordingSeed {
    async fn databases(&self, selection: &Selection) -> pgferry::Result<InstancePlan> {
        let database = |name: &str, is_template| SourceDatabase {
            name: name.to_owned(),
            is_template,
            allows_connections: name != "template0" && !self.closed.borrow().iter().any(|c| c == name),
        };
        let mut server: Vec<SourceDatabase> = self.databases.iter().map(|d| database(d, false)).collect();
        server.extend([database("template0", true), database("template1", true), database("rdsadmin", false)]);
        plan(&server, selection).map_err(|UnknownDatabase(name)| {
            pgferry::Error::new(pgferry::ErrorKind::Usage, format!("scripted: no database {name:?}"))
        })
    }

    async fn prepare(&self, database: &str) -> pgferry::Result<SeedMark> {
        scripted_failure(&self.fail_prepare, database)?;
        self.prepared.borrow_mut().push(database.to_owned());
        Ok(SeedMark { slot: format!("{}_{database}", self.mark.slot), ..self.mark.clone() })
    }

    async fn start_from(&self, database: &str, _mark: &SeedMark, redo: Lsn) -> pgferry::Result<()> {
        scripted_failure(&self.fail_start, database)?;
        self.started.borrow_mut().push((database.to_owned(), redo));
        Ok(())
    }

    async fn existing(&self) -> pgferry::Result<Vec<String>> {
        let plan = self.databases(&Selection::default()).await?;
        Ok(plan.databases.into_iter().chain(plan.left_out.into_iter().map(|(database, _)| database)).collect())
    }

    async fn restored(&self) -> pgferry::Result<Vec<String>> {
        let closed = self.closed.borrow();
        let open = self.databases.iter().filter(|d| !closed.contains(d));
        Ok(open.chain(self.only_on_target.borrow().iter()).cloned().collect())
    }
}
