//! The audit log's hash chain: the canonical encoding each entry's SHA-256 is computed over, and
//! the walk that verifies a chain. Shared by the coordinator (which writes and verifies the
//! stored log) and the CLI (which verifies an exported file offline), so both compute the same
//! hashes.
//!
//! An entry's hash covers its sequence number, time, kind, actor, workspace, run id, detail
//! (canonical JSON text) and the previous entry's hash, each field length-prefixed so no two
//! different entries encode alike. Changing an entry breaks its own hash; removing or reordering
//! entries breaks the sequence or the links. Rewriting every hash after a change is only
//! detectable against a head (`seq`, `sha256`) kept elsewhere, e.g. in a SIEM.

use sha2::{Digest, Sha256};

/// The `prev_sha256` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored entry of the chain, as written and as exported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: String,
    pub actor: String,
    pub workspace: String,
    pub run_id: String,
    /// The detail as canonical JSON text ([`canonical_json`]).
    pub detail: String,
    pub prev_sha256: String,
    pub sha256: String,
}

impl Record {
    /// The hash this entry must carry: over every field but `sha256` itself.
    pub fn expected_sha256(&self) -> String {
        self.hash_as(self.seq)
    }

    /// The hash the entry's content would have at sequence number `seq`.
    fn hash_as(&self, seq: i64) -> String {
        let mut h = Sha256::new();
        h.update(b"tofuflow-audit-v1");
        let (seq, at) = (seq.to_string(), self.at_ms.to_string());
        for field in [
            seq.as_str(),
            at.as_str(),
            &self.kind,
            &self.actor,
            &self.workspace,
            &self.run_id,
            &self.detail,
            &self.prev_sha256,
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// JSON text with object keys sorted at every level and no spaces: the same value always
/// gives the same text, whatever order it was built or parsed in.
pub fn canonical_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(canonical_json).collect();
            format!("[{}]", parts.join(","))
        }
        scalar => scalar.to_string(),
    }
}

/// Where a chain breaks first, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The entry's content does not match its hash: it was changed after it was written.
    Altered { seq: i64 },
    /// The entry was written at another position (`written_as`): entries were reordered.
    Moved { seq: i64, written_as: i64 },
    /// Entries `seq` up to `next - 1` are missing: they were deleted.
    Missing { seq: i64, next: i64 },
    /// Entry `seq` was expected but an earlier (or repeated) number came.
    OutOfOrder { seq: i64, found: i64 },
    /// The entry's `prev_sha256` is not the previous entry's hash: an entry before it was
    /// replaced.
    Unlinked { seq: i64 },
}

impl Broken {
    /// The first bad sequence number.
    pub fn seq(&self) -> i64 {
        match self {
            Broken::Altered { seq }
            | Broken::Moved { seq, .. }
            | Broken::Missing { seq, .. }
            | Broken::OutOfOrder { seq, .. }
            | Broken::Unlinked { seq } => *seq,
        }
    }

    /// What is wrong, in words.
    pub fn reason(&self) -> String {
        match self {
            Broken::Altered { seq } => {
                format!("entry {seq} was altered: its content does not match its sha256")
            }
            Broken::Moved { seq, written_as } => format!(
                "entry {seq} holds the entry written as {written_as}: entries were reordered"
            ),
            Broken::Missing { seq, next } if *next == seq + 1 => {
                format!("entry {seq} is missing (deleted): the next entry is {next}")
            }
            Broken::Missing { seq, next } => format!(
                "entries {seq} to {} are missing (deleted): the next entry is {next}",
                next - 1
            ),
            Broken::OutOfOrder { seq, found } => {
                format!("entry {seq} was expected but entry {found} came: entries were reordered")
            }
            Broken::Unlinked { seq } => format!(
                "entry {seq} does not link to the entry before it (prev_sha256 mismatch): that entry was replaced"
            ),
        }
    }
}

/// A walk along a chain, one entry at a time, in sequence order.
#[derive(Clone, Debug)]
pub struct Walk {
    next: i64,
    prev: String,
    /// Entries checked so far.
    pub checked: u64,
}

impl Walk {
    /// A walk from the first entry.
    pub fn genesis() -> Walk {
        Walk {
            next: 1,
            prev: GENESIS.to_string(),
            checked: 0,
        }
    }

    /// A walk from `first`, whose link to the entries before it is taken on trust (an export
    /// made with `--since`).
    pub fn from(first: &Record) -> Walk {
        Walk {
            next: first.seq,
            prev: first.prev_sha256.clone(),
            checked: 0,
        }
    }

    /// The last entry checked: (seq, sha256); (0, GENESIS) before any.
    pub fn head(&self) -> (i64, &str) {
        (self.next - 1, &self.prev)
    }

    /// Checks the next entry. `seq_of` finds the sequence number of the entry with a given
    /// hash (to tell a moved entry from an altered one).
    pub fn step(&mut self, r: &Record, seq_of: impl Fn(&str) -> Option<i64>) -> Result<(), Broken> {
        if r.seq > self.next {
            return Err(Broken::Missing {
                seq: self.next,
                next: r.seq,
            });
        }
        if r.seq < self.next {
            return Err(Broken::OutOfOrder {
                seq: self.next,
                found: r.seq,
            });
        }
        if r.expected_sha256() != r.sha256 {
            let origin = if r.prev_sha256 == GENESIS {
                Some(0)
            } else {
                seq_of(&r.prev_sha256)
            };
            return Err(match origin {
                Some(q) if q + 1 != r.seq && r.hash_as(q + 1) == r.sha256 => Broken::Moved {
                    seq: r.seq,
                    written_as: q + 1,
                },
                _ => Broken::Altered { seq: r.seq },
            });
        }
        if r.prev_sha256 != self.prev {
            return Err(Broken::Unlinked { seq: r.seq });
        }
        self.next = r.seq + 1;
        self.prev = r.sha256.clone();
        self.checked += 1;
        Ok(())
    }
}

/// Links `r` after `prev` (`None` for the first entry): sets its seq, prev_sha256 and sha256.
pub fn link(r: &mut Record, prev: Option<(i64, &str)>) {
    let (seq, prev) = prev.unwrap_or((0, GENESIS));
    r.seq = seq + 1;
    r.prev_sha256 = prev.to_string();
    r.sha256 = r.expected_sha256();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for k in 0..n {
            let mut r = Record {
                at_ms: 1000 + k,
                kind: "run_submitted".into(),
                actor: format!("user{k}"),
                detail: canonical_json(&serde_json::json!({"b": k, "a": "x"})),
                ..Record::default()
            };
            let prev = out.last().map(|p| (p.seq, p.sha256.as_str()));
            link(&mut r, prev);
            out.push(r);
        }
        out
    }

    fn verify(rs: &[Record]) -> Result<u64, Broken> {
        let mut w = Walk::genesis();
        for r in rs {
            w.step(r, |h| rs.iter().find(|x| x.sha256 == h).map(|x| x.seq))?;
        }
        Ok(w.checked)
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"z":1,"a":{"y":[2,{"d":1,"c":2}],"b":"q"}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"b":"q","y":[2,{"c":2,"d":1}]},"z":1}"#
        );
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn an_altered_entry_is_named() {
        let mut c = chain(5);
        c[2].actor = "mallory".into();
        assert_eq!(verify(&c), Err(Broken::Altered { seq: 3 }));
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c), Err(Broken::Missing { seq: 2, next: 3 }));
    }

    #[test]
    fn swapped_entries_are_named_as_moved() {
        let mut c = chain(5);
        // The stored positions (seq) stay; the contents trade places.
        let (a, b) = (c[1].clone(), c[3].clone());
        c[1] = Record { seq: 2, ..b };
        c[3] = Record { seq: 4, ..a };
        assert_eq!(
            verify(&c),
            Err(Broken::Moved {
                seq: 2,
                written_as: 4
            })
        );
    }

    #[test]
    fn reordered_lines_of_an_export_are_named() {
        let mut c = chain(4);
        c.swap(1, 2);
        assert_eq!(verify(&c), Err(Broken::Missing { seq: 2, next: 3 }));
        let c = chain(4);
        let lines = [c[0].clone(), c[1].clone(), c[1].clone()];
        assert_eq!(verify(&lines), Err(Broken::OutOfOrder { seq: 3, found: 2 }));
    }

    #[test]
    fn a_replaced_entry_with_a_valid_hash_breaks_the_next_link() {
        let mut c = chain(4);
        c[1].actor = "mallory".into();
        c[1].sha256 = c[1].expected_sha256();
        assert_eq!(verify(&c), Err(Broken::Unlinked { seq: 3 }));
    }

    #[test]
    fn a_partial_export_verifies_from_its_first_entry() {
        let c = chain(5);
        let mut w = Walk::from(&c[2]);
        for r in &c[2..] {
            w.step(r, |_| None).unwrap();
        }
        assert_eq!(w.head(), (5, c[4].sha256.as_str()));
    }
}
