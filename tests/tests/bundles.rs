//! Hostile bundles through a real agent (reliability matrix S2): each is uploaded as it is, the
//! agent refuses it naming the entry and the reason, the run fails with that reason, and nothing
//! is written outside the work root (nor, thanks to the agent's checking pass, inside it).

use std::time::{Duration, Instant};
use tofuflow_e2e::{AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

const T: Duration = Duration::from_secs(120);

type Tar = tar::Builder<flate2::write::GzEncoder<Vec<u8>>>;

fn tgz(build: impl FnOnce(&mut Tar)) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    build(&mut b);
    b.into_inner().unwrap().finish().unwrap()
}

/// A header with the raw name (the tar crate's `set_path` refuses hostile paths).
fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    let name = path.as_bytes();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

fn main_tf(b: &mut Tar) {
    let data = b"resource \"terraform_data\" \"x\" {}\n";
    b.append(
        &header("main.tf", tar::EntryType::Regular, data.len() as u64, 0o644),
        &data[..],
    )
    .unwrap();
}

fn link(b: &mut Tar, path: &str, target: &str, kind: tar::EntryType) {
    let mut h = header(path, kind, 0, 0o777);
    let t = target.as_bytes();
    h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
}

/// A gzip'd tar whose single file really expands to `gib` GiB of zeros, built in well under a
/// second: one deflate block of 1 MiB of zeros, ended with a sync flush, repeated.
fn bomb(gib: u64) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let size = gib << 30;
    let mut tar_head = header("zeros.bin", tar::EntryType::Regular, size, 0o644)
        .as_bytes()
        .to_vec();
    tar_head.resize(512, 0);
    let mut c = Compress::new(Compression::best(), false);
    let mut deflate = |input: &[u8], flush: FlushCompress| {
        let mut out = Vec::with_capacity(input.len() / 100 + 1024);
        let start = c.total_in();
        loop {
            let consumed = (c.total_in() - start) as usize;
            out.reserve(64 * 1024);
            c.compress_vec(&input[consumed..], &mut out, flush).unwrap();
            if (c.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        out
    };
    let mb = vec![0u8; 1 << 20];
    let mut body = deflate(&tar_head, FlushCompress::Sync);
    body.extend(deflate(&mb, FlushCompress::Sync));
    // Once the window is all zeros, every further MiB compresses to the same bytes.
    let chunk = deflate(&mb, FlushCompress::Sync);
    for _ in 2..(size >> 20) {
        body.extend_from_slice(&chunk);
    }
    body.extend(deflate(&[0u8; 1024], FlushCompress::Finish));
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    gz.extend(body);
    gz.extend([0u8; 8]); // CRC and size: never reached, the agent refuses first.
    gz
}

async fn submit_bytes(c: &Cluster, data: Vec<u8>, workspace: &str) -> String {
    let mut client = c.client().await;
    let chunks: Vec<v1::Chunk> = data
        .chunks(tofuflow_proto::CHUNK_BYTES)
        .map(|d| v1::Chunk { data: d.to_vec() })
        .collect();
    let up = client
        .upload_bundle(tokio_stream::iter(chunks))
        .await
        .expect("upload")
        .into_inner();
    client
        .submit_run(v1::SubmitRunRequest {
            workspace: workspace.into(),
            bundle_digest: up.digest,
            pool: "default".into(),
            kind: v1::RunKind::PlanOnly as i32,
            actor: "tester".into(),
            ..Default::default()
        })
        .await
        .expect("submit")
        .into_inner()
        .id
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bundles_are_refused_by_the_agent_and_write_nothing() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let up_esc = format!("../../../../../../../../../tmp/tofuflow-escape-up-{tag}");
    let abs_esc = format!("/etc/tofuflow-escape-abs-{tag}");
    let sym_esc = format!("/tmp/tofuflow-escape-sym-{tag}");
    std::fs::create_dir_all(&sym_esc).unwrap();
    let t0 = Instant::now();
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "dotdot",
            tgz(|b| {
                main_tf(b);
                b.append(&header(&up_esc, tar::EntryType::Regular, 2, 0o644), &b"x\n"[..])
                    .unwrap();
            }),
            format!("bundle entry {up_esc:?} rejected: path contains '..'"),
        ),
        (
            "absolute",
            tgz(|b| {
                main_tf(b);
                b.append(&header(&abs_esc, tar::EntryType::Regular, 2, 0o644), &b"x\n"[..])
                    .unwrap();
            }),
            format!("bundle entry {abs_esc:?} rejected: absolute path"),
        ),
        (
            "symlink-then-write",
            tgz(|b| {
                main_tf(b);
                link(b, "out", &sym_esc, tar::EntryType::Symlink);
                b.append(&header("out/pwned", tar::EntryType::Regular, 2, 0o644), &b"x\n"[..])
                    .unwrap();
            }),
            format!("bundle entry \"out\" rejected: symlink to {sym_esc} points outside the bundle"),
        ),
        (
            "hard-link-out",
            tgz(|b| {
                main_tf(b);
                link(b, "passwd", "../../../../../../etc/passwd", tar::EntryType::Link);
            }),
            "bundle entry \"passwd\" rejected: hard link to ../../../../../../etc/passwd points outside the bundle".into(),
        ),
        (
            "device",
            tgz(|b| {
                main_tf(b);
                let mut h = header("null", tar::EntryType::Char, 0, 0o666);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }),
            "bundle entry \"null\" rejected: Char entries (devices, FIFOs, ...) are not allowed".into(),
        ),
        (
            "setuid",
            tgz(|b| {
                main_tf(b);
                b.append(&header("suid", tar::EntryType::Regular, 2, 0o4755), &b"x\n"[..])
                    .unwrap();
            }),
            "bundle entry \"suid\" rejected: setuid/setgid bit set".into(),
        ),
        (
            "10-GiB-bomb",
            bomb(10),
            "bundle entry \"zeros.bin\" rejected: bundle expands beyond 1073741824 bytes".into(),
        ),
        (
            "a-million-files",
            tgz(|b| {
                main_tf(b);
                for i in 0..1_000_000 {
                    b.append(
                        &header(&format!("f/{i}"), tar::EntryType::Regular, 0, 0o644),
                        std::io::empty(),
                    )
                    .unwrap();
                }
            }),
            "bundle entry \"f/99999\" rejected: more than 100000 entries".into(),
        ),
    ];
    eprintln!("built the hostile archives in {:?}", t0.elapsed());
    let mut ids = Vec::new();
    for (name, data, _) in &cases {
        eprintln!("{name}: {} bytes", data.len());
        ids.push(submit_bytes(&c, data.clone(), &format!("bundles/{name}")).await);
    }
    for ((name, _, want), id) in cases.iter().zip(&ids) {
        let r = c.wait_state(id, &["failed"], T).await;
        assert!(
            r.error.contains(want.as_str()),
            "{name}: {:?} lacks {want:?}",
            r.error
        );
        let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", id]).stdout).to_string();
        assert!(
            logs.contains(want.as_str()),
            "{name}: the log says why:\n{logs}"
        );
        assert!(
            !c.agents[0].work_root.join("work").join(id).exists(),
            "{name}: the workdir is gone"
        );
    }
    // Nothing outside the work root.
    assert!(!std::path::Path::new(&format!("/tmp/tofuflow-escape-up-{tag}")).exists());
    assert!(!std::path::Path::new(&abs_esc).exists());
    assert!(std::fs::read_dir(&sym_esc).unwrap().next().is_none());
    std::fs::remove_dir_all(&sym_esc).unwrap();
    // The agent is still taking work.
    let id = c.submit(
        &tofuflow_e2e::example("gpu-pool"),
        "bundles/after",
        &["--auto-approve"],
    );
    c.wait_state(&id, &["applied"], T).await;
}
