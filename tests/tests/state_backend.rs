//! The coordinator as OpenTofu's `http` state backend: OpenTofu's exact request sequences, every
//! rejection, credentials that live and die with a task's lease, and locks fenced by leases —
//! on SQLite and PostgreSQL.

use serde_json::{json, Value};
use std::time::Duration;
use tofuflow_e2e::{
    claim_next, example, finish_plan_with_changes, http_request, wait_for, Claimed, Cluster, Db,
};

fn lock_info(id: &str, op: &str) -> Vec<u8> {
    json!({"ID": id, "Operation": op, "Info": "", "Who": "agent@host", "Version": "1.9.0", "Created": "2024-05-25T17:32:41.123456789Z", "Path": ""}).to_string().into_bytes()
}

fn state(serial: u64, lineage: &str, marker: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({"version": 4, "terraform_version": "1.9.0", "serial": serial, "lineage": lineage, "outputs": {"m": {"value": marker, "type": "string"}}, "resources": [], "check_results": null})).unwrap()
}

/// One run's task lease on workspace `conf/ws`, as a fake agent holds it, and the workspace's
/// state-backend address.
struct Conf {
    db: Db,
    c: Cluster,
    id: String,
    url: String,
    lease: Claimed,
}

/// Asserts one response's status, naming the database and the request.
fn expect(db: Db) -> impl Fn(u16, &str, (u16, String)) {
    move |code: u16, what: &str, got: (u16, String)| {
        assert_eq!(got.0, code, "{db:?} {what}: {}", got.1)
    }
}

/// A cluster on `db` with an `--auto-approve` run whose plan task a fake agent holds.
async fn plan_lease(db: Db) -> Conf {
    let c = Cluster::start(db).await;
    let id = c.submit(&example("gpu-pool"), "conf/ws", &["--auto-approve"]);
    let plan = claim_next(&c, "default", "fake-agent").await;
    assert_eq!(plan.spec.run_id, id);
    let url = plan.spec.backend.clone().unwrap().address;
    assert!(url.ends_with("/state/conf/ws"), "{url}");
    Conf {
        db,
        c,
        id,
        url,
        lease: plan,
    }
}

/// The same after the plan ended with changes: the fake agent holds the approved apply, whose
/// credential writes.
async fn apply_lease(db: Db) -> Conf {
    let mut k = plan_lease(db).await;
    finish_plan_with_changes(&mut k.lease).await;
    let apply = claim_next(&k.c, "default", "fake-agent").await;
    assert_eq!(apply.spec.phase, tofuflow_proto::v1::Phase::Apply as i32);
    let b = apply.spec.backend.clone().unwrap();
    assert_eq!(b.address, k.url, "the same workspace address");
    k.lease = apply;
    k
}

/// Only the task's credential reads its own workspace.
async fn who_may_talk(k: &Conf) {
    let (db, url) = (k.db, k.url.clone());
    let b = k.lease.spec.backend.clone().unwrap();
    let auth = Some((b.username.as_str(), b.password.as_str()));
    let st = expect(db);
    let c = &k.c;
    // Who may talk to it.
    st(
        401,
        "no credentials",
        http_request("GET", &url, None, None, &[]),
    );
    st(
        403,
        "wrong password",
        http_request("GET", &url, Some((&b.username, "nope")), None, &[]),
    );
    st(
        403,
        "someone else's workspace",
        http_request(
            "GET",
            &format!("{}/state/conf/other", c.http_url()),
            auth,
            None,
            &[],
        ),
    );
}

/// A plan: LOCK GET UNLOCK; its credential never writes.
async fn plan_sequence(k: &Conf) {
    let (db, url) = (k.db, k.url.clone());
    let b = k.lease.spec.backend.clone().unwrap();
    let auth = Some((b.username.as_str(), b.password.as_str()));
    let st = expect(db);
    // plan: LOCK GET UNLOCK.
    st(
        200,
        "plan LOCK",
        http_request(
            "LOCK",
            &url,
            auth,
            Some(&lock_info("plan-1", "OperationTypePlan")),
            &[],
        ),
    );
    st(
        204,
        "plan GET (no state)",
        http_request("GET", &url, auth, None, &[]),
    );
    // A plan task's credential never writes, locked or not (providers run code during plan).
    for (method, target) in [
        ("POST", format!("{url}?ID=plan-1")),
        ("PUT", format!("{url}?ID=plan-1")),
        ("DELETE", url.clone()),
    ] {
        let (code, msg) = http_request(
            method,
            &target,
            auth,
            Some(&state(1, "PLAN", "from a plan")),
            &[],
        );
        assert!(
            code == 403 && msg.contains("plan task") && msg.contains("read-only"),
            "{db:?} plan-phase {method}: {code} {msg}"
        );
    }
    st(
        204,
        "nothing was stored by the plan task",
        http_request("GET", &url, auth, None, &[]),
    );
    st(
        200,
        "plan UNLOCK",
        http_request(
            "UNLOCK",
            &url,
            auth,
            Some(&lock_info("plan-1", "OperationTypePlan")),
            &[],
        ),
    );
    let (code, msg) = http_request("POST", &url, auth, Some(&state(1, "PLAN", "unlocked")), &[]);
    assert_eq!(code, 403, "{db:?} unlocked plan-phase POST: {msg}");
}

/// An apply: LOCK GET GET POST?ID= UNLOCK, and every rejection while it holds the lock.
async fn apply_sequence(k: &Conf) {
    let (db, url) = (k.db, k.url.clone());
    let b = k.lease.spec.backend.clone().unwrap();
    let auth = Some((b.username.as_str(), b.password.as_str()));
    let st = expect(db);
    // apply: LOCK GET GET POST?ID= UNLOCK.
    let s1 = state(1, "L1", "first");
    st(
        200,
        "apply LOCK",
        http_request(
            "LOCK",
            &url,
            auth,
            Some(&lock_info("apply-1", "OperationTypeApply")),
            &[],
        ),
    );
    st(204, "apply GET", http_request("GET", &url, auth, None, &[]));
    st(
        204,
        "apply GET before first write",
        http_request("GET", &url, auth, None, &[]),
    );
    st(
        200,
        "apply POST?ID=",
        http_request("POST", &format!("{url}?ID=apply-1"), auth, Some(&s1), &[]),
    );
    st(
        200,
        "identical retry",
        http_request("POST", &format!("{url}?ID=apply-1"), auth, Some(&s1), &[]),
    );

    // Every rejection, while locked by apply-1.
    let (code, holder) = http_request(
        "LOCK",
        &url,
        auth,
        Some(&lock_info("other", "OperationTypeApply")),
        &[],
    );
    assert_eq!(code, 423, "{db:?} a second LOCK");
    assert_eq!(
        serde_json::from_str::<Value>(&holder).unwrap()["ID"],
        "apply-1",
        "the body is the holder's LockInfo"
    );
    let s2 = state(2, "L1", "second");
    st(
        409,
        "write without the lock ID",
        http_request("POST", &url, auth, Some(&s2), &[]),
    );
    st(
        409,
        "write with a wrong lock ID",
        http_request("POST", &format!("{url}?ID=other"), auth, Some(&s2), &[]),
    );
    let (code, msg) = http_request(
        "POST",
        &format!("{url}?ID=apply-1"),
        auth,
        Some(&state(2, "FOREIGN", "x")),
        &[],
    );
    assert!(
        code == 409 && msg.contains("lineage"),
        "{db:?} foreign lineage: {code} {msg}"
    );
    let (code, msg) = http_request(
        "POST",
        &format!("{url}?ID=apply-1"),
        auth,
        Some(&state(0, "L1", "x")),
        &[],
    );
    assert!(
        code == 409 && msg.contains("serial"),
        "{db:?} lower serial: {code} {msg}"
    );
    let (code, msg) = http_request(
        "POST",
        &format!("{url}?ID=apply-1"),
        auth,
        Some(&state(1, "L1", "changed")),
        &[],
    );
    assert!(
        code == 409 && msg.contains("different content"),
        "{db:?} same serial, other content: {code} {msg}"
    );
    st(
        400,
        "Content-MD5 mismatch",
        http_request(
            "POST",
            &format!("{url}?ID=apply-1"),
            auth,
            Some(&s2),
            &[("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==")],
        ),
    );
    st(
        400,
        "not JSON",
        http_request(
            "POST",
            &format!("{url}?ID=apply-1"),
            auth,
            Some(b"{nope"),
            &[],
        ),
    );
    let (code, cur) = http_request(
        "UNLOCK",
        &url,
        auth,
        Some(&lock_info("other", "OperationTypeApply")),
        &[],
    );
    assert_eq!(code, 409, "{db:?} UNLOCK with a wrong ID");
    assert_eq!(
        serde_json::from_str::<Value>(&cur).unwrap()["ID"],
        "apply-1",
        "the body is the current lock"
    );
    st(
        200,
        "the good write",
        http_request("POST", &format!("{url}?ID=apply-1"), auth, Some(&s2), &[]),
    );
    st(
        200,
        "apply UNLOCK",
        http_request(
            "UNLOCK",
            &url,
            auth,
            Some(&lock_info("apply-1", "OperationTypeApply")),
            &[],
        ),
    );
    st(
        409,
        "UNLOCK when not locked",
        http_request(
            "UNLOCK",
            &url,
            auth,
            Some(&lock_info("apply-1", "OperationTypeApply")),
            &[],
        ),
    );
    let (code, body) = http_request("GET", &url, auth, None, &[]);
    assert_eq!(
        (code, body.into_bytes()),
        (200, s2.clone()),
        "{db:?} GET returns the last write byte for byte"
    );
}

/// force-unlock as OpenTofu 1.10+ and 1.9 send it.
async fn force_unlock(k: &Conf) {
    let (db, url) = (k.db, k.url.clone());
    let b = k.lease.spec.backend.clone().unwrap();
    let auth = Some((b.username.as_str(), b.password.as_str()));
    let st = expect(db);
    // force-unlock: OpenTofu 1.10+ sends an ID-only body, 1.9 sends none.
    st(
        200,
        "LOCK",
        http_request(
            "LOCK",
            &url,
            auth,
            Some(&lock_info("f1", "OperationTypeApply")),
            &[],
        ),
    );
    let id_only = json!({"ID": "f1", "Operation": "", "Info": "", "Who": "", "Version": "", "Created": "0001-01-01T00:00:00Z", "Path": ""}).to_string();
    st(
        200,
        "force-unlock (1.10+)",
        http_request("UNLOCK", &url, auth, Some(id_only.as_bytes()), &[]),
    );
    st(
        200,
        "LOCK",
        http_request(
            "LOCK",
            &url,
            auth,
            Some(&lock_info("f2", "OperationTypeApply")),
            &[],
        ),
    );
    st(
        200,
        "force-unlock (1.9, no body)",
        http_request("UNLOCK", &url, auth, None, &[]),
    );
}

/// `tofu state push`, then one version per accepted write.
async fn push(k: &Conf) {
    let (db, url) = (k.db, k.url.clone());
    let b = k.lease.spec.backend.clone().unwrap();
    let auth = Some((b.username.as_str(), b.password.as_str()));
    let st = expect(db);
    let (c, id) = (&k.c, k.id.clone());
    // state push: LOCK GET POST?ID= UNLOCK with a higher serial.
    st(
        200,
        "push LOCK",
        http_request(
            "LOCK",
            &url,
            auth,
            Some(&lock_info("push-1", "state-push")),
            &[],
        ),
    );
    st(200, "push GET", http_request("GET", &url, auth, None, &[]));
    st(
        200,
        "push POST",
        http_request(
            "POST",
            &format!("{url}?ID=push-1"),
            auth,
            Some(&state(3, "L1", "pushed")),
            &[],
        ),
    );
    st(
        200,
        "push UNLOCK",
        http_request(
            "UNLOCK",
            &url,
            auth,
            Some(&lock_info("push-1", "state-push")),
            &[],
        ),
    );

    let out = c.cli(&["state", "list", "conf/ws", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let versions = v["versions"].as_array().unwrap();
    assert_eq!(
        versions.len(),
        3,
        "{db:?} one version per accepted write, none for the retry"
    );
    assert_eq!(versions[0]["serial"], 3);
    assert_eq!(
        versions[2]["run_id"],
        id.as_str(),
        "each version names its run"
    );
}

/// DELETE, and a rollback over it.
async fn delete_and_rollback(k: &Conf) {
    let (db, url) = (k.db, k.url.clone());
    let b = k.lease.spec.backend.clone().unwrap();
    let auth = Some((b.username.as_str(), b.password.as_str()));
    let st = expect(db);
    let c = &k.c;
    // DELETE: gone for readers, kept in history, and a rollback brings it back.
    assert!(c
        .cli(&["state", "lock", "conf/ws", "--reason", "hold"])
        .status
        .success());
    st(
        409,
        "DELETE while someone else holds the lock",
        http_request("DELETE", &url, auth, None, &[]),
    );
    assert!(c.cli(&["state", "unlock", "conf/ws"]).status.success());
    st(200, "DELETE", http_request("DELETE", &url, auth, None, &[]));
    st(
        204,
        "GET after DELETE",
        http_request("GET", &url, auth, None, &[]),
    );
    st(
        200,
        "DELETE again (idempotent)",
        http_request("DELETE", &url, auth, None, &[]),
    );
    let v: Value =
        serde_json::from_slice(&c.cli(&["state", "list", "conf/ws", "-o", "json"]).stdout).unwrap();
    assert_eq!(v["versions"][0]["size"], -1, "{db:?} a tombstone version");
    assert!(c
        .cli(&["state", "rollback", "conf/ws", "--to", "3"])
        .status
        .success());
    let (code, body) = http_request("GET", &url, auth, None, &[]);
    assert_eq!(
        (code, body.into_bytes()),
        (200, state(3, "L1", "pushed")),
        "{db:?} rolled back over the deletion"
    );
}

/// A dead lease: its lock goes and its credential cannot write.
async fn fenced(k: &Conf) {
    let (db, url) = (k.db, k.url.clone());
    let b = k.lease.spec.backend.clone().unwrap();
    let auth = Some((b.username.as_str(), b.password.as_str()));
    let st = expect(db);
    let (c, id) = (&k.c, k.id.clone());
    // The lease dies (this fake agent never heartbeats): the lock goes, the credential is dead.
    st(
        200,
        "LOCK before the lease dies",
        http_request(
            "LOCK",
            &url,
            auth,
            Some(&lock_info("doomed", "OperationTypeApply")),
            &[],
        ),
    );
    wait_for("the lease to expire", Duration::from_secs(30), || async {
        let r = c.run(&id).await;
        (r.state == "interrupted").then_some(())
    })
    .await;
    st(
        403,
        "late write of the fenced attempt",
        http_request(
            "POST",
            &format!("{url}?ID=doomed"),
            auth,
            Some(&state(4, "L1", "late")),
            &[],
        ),
    );
    let v: Value =
        serde_json::from_slice(&c.cli(&["state", "list", "conf/ws", "-o", "json"]).stdout).unwrap();
    assert_eq!(
        v["lock"],
        Value::Null,
        "{db:?} the dead lease's lock was released"
    );
    assert_eq!(
        v["versions"].as_array().unwrap().len(),
        5,
        "{db:?} nothing written by the fenced attempt"
    );
}

/// Each request sequence as a test on SQLite and on PostgreSQL; a sequence that needs the state
/// an earlier one leaves replays it first (with its assertions).
macro_rules! on_both_databases {
    ($($name:ident => |$db:ident| $body:block)*) => {
        $(
            mod $name {
                use super::*;
                async fn case($db: Db) $body
                #[tokio::test(flavor = "multi_thread")]
                async fn on_sqlite() {
                    case(Db::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread")]
                async fn on_postgres() {
                    case(Db::Postgres).await;
                }
            }
        )*
    };
}

on_both_databases! {
    only_the_task_credential_reads_its_workspace => |db| {
        who_may_talk(&plan_lease(db).await).await;
    }
    a_plan_locks_and_reads_and_never_writes => |db| {
        plan_sequence(&plan_lease(db).await).await;
    }
    an_apply_locks_writes_and_unlocks_and_every_bad_request_is_refused => |db| {
        apply_sequence(&apply_lease(db).await).await;
    }
    force_unlock_works_with_an_id_only_body_and_with_none => |db| {
        force_unlock(&apply_lease(db).await).await;
    }
    state_push_adds_one_version_per_accepted_write => |db| {
        let k = apply_lease(db).await;
        apply_sequence(&k).await;
        push(&k).await;
    }
    delete_hides_the_state_and_a_rollback_brings_it_back => |db| {
        let k = apply_lease(db).await;
        apply_sequence(&k).await;
        push(&k).await;
        delete_and_rollback(&k).await;
    }
    a_dead_lease_loses_its_lock_and_cannot_write => |db| {
        let k = apply_lease(db).await;
        apply_sequence(&k).await;
        push(&k).await;
        delete_and_rollback(&k).await;
        fenced(&k).await;
    }
}
