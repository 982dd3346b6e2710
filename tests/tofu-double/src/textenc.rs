//! The character encodings `textencodebase64` and `textdecodebase64` accept: UTF-8, UTF-16
//! (LE, BE, or with a byte order mark), ISO-8859-1 and US-ASCII, by their IANA names and
//! aliases (case-insensitive). Any other name is refused with OpenTofu's error, never guessed;
//! text an encoding cannot hold, or bytes that are not valid in it, are errors as in OpenTofu.

#[derive(Clone, Copy)]
enum Enc {
    Utf8,
    Utf16Le,
    Utf16Be,
    Utf16Bom,
    Latin1,
    Ascii,
}

fn lookup(name: &str) -> Result<Enc, String> {
    let n = name.to_ascii_lowercase();
    Ok(match n.as_str() {
        "utf-8" | "csutf8" => Enc::Utf8,
        "utf-16le" | "csutf16le" => Enc::Utf16Le,
        "utf-16be" | "csutf16be" => Enc::Utf16Be,
        "utf-16" | "csutf16" => Enc::Utf16Bom,
        "iso-8859-1" | "iso_8859-1" | "iso_8859-1:1987" | "iso-ir-100" | "latin1" | "l1"
        | "ibm819" | "cp819" | "csisolatin1" => Enc::Latin1,
        "us-ascii" => Enc::Ascii,
        _ => {
            return Err(format!(
                "Invalid value for \"encoding\" parameter: {name:?} is not a supported IANA encoding name or alias in this OpenTofu version."
            ))
        }
    })
}

/// The bytes of `s` in the named encoding.
pub fn encode(s: &str, name: &str) -> Result<Vec<u8>, String> {
    let units = || s.encode_utf16();
    Ok(match lookup(name)? {
        Enc::Utf8 => s.as_bytes().to_vec(),
        Enc::Utf16Le => units().flat_map(u16::to_le_bytes).collect(),
        Enc::Utf16Be => units().flat_map(u16::to_be_bytes).collect(),
        Enc::Utf16Bom => [0xfe, 0xff]
            .into_iter()
            .chain(units().flat_map(u16::to_be_bytes))
            .collect(),
        Enc::Latin1 | Enc::Ascii => {
            let limit = if matches!(lookup(name)?, Enc::Ascii) {
                0x7f
            } else {
                0xff
            };
            s.chars()
                .map(|c| u8::try_from(u32::from(c)).ok().filter(|b| *b <= limit))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| {
                    format!("Invalid value for \"string\" parameter: the given string contains characters that cannot be represented in {name}")
                })?
        }
    })
}

/// The text the bytes hold in the named encoding.
pub fn decode(b: &[u8], name: &str) -> Result<String, String> {
    let bad = || {
        format!("Invalid value for \"source\" parameter: the given value is not valid {name} text")
    };
    let utf16 = |le: bool, b: &[u8]| -> Result<String, String> {
        if !b.len().is_multiple_of(2) {
            return Err(bad());
        }
        let units: Vec<u16> = b
            .chunks(2)
            .map(|p| match le {
                true => u16::from_le_bytes([p[0], p[1]]),
                false => u16::from_be_bytes([p[0], p[1]]),
            })
            .collect();
        String::from_utf16(&units).map_err(|_| bad())
    };
    match lookup(name)? {
        Enc::Utf8 => String::from_utf8(b.to_vec()).map_err(|_| bad()),
        Enc::Utf16Le => utf16(true, b),
        Enc::Utf16Be => utf16(false, b),
        Enc::Utf16Bom => match b {
            [0xff, 0xfe, rest @ ..] => utf16(true, rest),
            [0xfe, 0xff, rest @ ..] => utf16(false, rest),
            _ => utf16(false, b),
        },
        Enc::Latin1 => Ok(b.iter().map(|&x| char::from(x)).collect()),
        Enc::Ascii if b.is_ascii() => Ok(b.iter().map(|&x| char::from(x)).collect()),
        Enc::Ascii => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        assert_eq!(encode("hé", "ISO-8859-1").unwrap(), [0x68, 0xe9]);
        assert_eq!(encode("Hi", "utf-16le").unwrap(), [b'H', 0, b'i', 0]);
        assert_eq!(decode(&[0, b'H', 0, b'i'], "UTF-16BE").unwrap(), "Hi");
        assert!(encode("€", "latin1").is_err());
        assert_eq!(encode("hi", "US-ASCII").unwrap(), b"hi");
        assert!(encode("hé", "US-ASCII").is_err());
        assert!(decode(&[0x68, 0xe9], "US-ASCII").is_err());
        assert!(decode(&[0xff], "UTF-8").is_err());
        assert!(decode(&[0x3d, 0xd8, 0x3d], "UTF-16LE").is_err());
        assert!(encode("x", "KLINGON")
            .unwrap_err()
            .contains("not a supported IANA"));
    }
}
