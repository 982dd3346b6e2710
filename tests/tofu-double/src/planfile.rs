//! Saved plan files as zip archives, like OpenTofu's (`internal/plans/planfile`): `tfplan` (here
//! the stand-in's own plan, JSON), `tfstate` (the prior state, when there is one) and
//! `tfconfig/<file>` for each configuration file. Entries are stored, not compressed. Reading
//! takes back only what the stand-in wrote; a real binary's plan file is refused clearly.

/// The archive's entries: name and content.
pub type Entries = Vec<(String, Vec<u8>)>;

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc ^= *b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The fields local and central headers share, from "version needed" to the name's length.
fn common(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    u16le(out, 20); // version needed to extract
    u16le(out, 0); // flags
    u16le(out, 0); // stored
    u16le(out, 0); // modification time
    u16le(out, 0x21); // modification date: 1980-01-01
    u32le(out, crc32(data));
    u32le(out, data.len() as u32);
    u32le(out, data.len() as u32);
    u16le(out, name.len() as u16);
}

/// Encodes `entries` as a zip archive.
pub fn zip(entries: &Entries) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len() as u32;
        u32le(&mut out, 0x0403_4b50);
        common(&mut out, name, data);
        u16le(&mut out, 0); // extra field length
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        u32le(&mut central, 0x0201_4b50);
        u16le(&mut central, 20); // version made by
        common(&mut central, name, data);
        for _ in 0..4 {
            u16le(&mut central, 0); // extra, comment, disk, internal attributes
        }
        u32le(&mut central, 0); // external attributes
        u32le(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let (cd_offset, cd_size, n) = (out.len() as u32, central.len() as u32, entries.len() as u16);
    out.extend_from_slice(&central);
    u32le(&mut out, 0x0605_4b50);
    for v in [0, 0, n, n] {
        u16le(&mut out, v);
    }
    u32le(&mut out, cd_size);
    u32le(&mut out, cd_offset);
    u16le(&mut out, 0); // comment length
    out
}

fn at16(b: &[u8], i: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?) as usize)
}

fn at32(b: &[u8], i: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
}

/// The stored entries of a zip archive; `None` when it is not one the stand-in can read.
pub fn unzip(b: &[u8]) -> Option<Entries> {
    let eocd = (0..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..].starts_with(&[0x50, 0x4b, 0x05, 0x06]))?;
    let (count, mut p) = (at16(b, eocd + 10)?, at32(b, eocd + 16)?);
    let mut entries = Vec::new();
    for _ in 0..count {
        if at32(b, p)? != 0x0201_4b50 || at16(b, p + 10)? != 0 {
            return None; // not a central header, or compressed
        }
        let (size, name_len) = (at32(b, p + 20)?, at16(b, p + 28)?);
        let skip = name_len + at16(b, p + 30)? + at16(b, p + 32)?;
        let name = String::from_utf8(b.get(p + 46..p + 46 + name_len)?.to_vec()).ok()?;
        let local = at32(b, p + 42)?;
        let start = local + 30 + at16(b, local + 26)? + at16(b, local + 28)?;
        entries.push((name, b.get(start..start + size)?.to_vec()));
        p += 46 + skip;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_crc_is_zips() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let entries: Entries = vec![
            ("tfplan".into(), b"{\"a\":1}".to_vec()),
            ("tfconfig/main.tf".into(), b"output \"x\" {}\n".to_vec()),
        ];
        let z = zip(&entries);
        assert!(z.starts_with(b"PK\x03\x04"));
        assert_eq!(unzip(&z), Some(entries));
        assert_eq!(unzip(b"{\"not\":\"zip\"}"), None);
    }
}
