//! OpenTofu's network functions `cidrsubnet`, `cidrsubnets`, `cidrhost` and `cidrnetmask` for
//! IPv4 and IPv6, with its error texts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed prefix: the network's address as a number, its length and the address width.
struct Prefix {
    base: u128,
    len: u32,
    bits: u32,
}

fn parse(prefix: &str) -> Result<Prefix, String> {
    let bad = || format!("invalid CIDR expression: invalid CIDR address: {prefix}");
    let (addr, len) = prefix.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let (n, bits) = match ip {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let len: u32 = len.parse().ok().filter(|l| *l <= bits).ok_or_else(bad)?;
    let host_bits = bits - len;
    let mask = if host_bits >= 128 {
        0
    } else {
        !((1u128 << host_bits) - 1)
    };
    Ok(Prefix {
        base: n & mask,
        len,
        bits,
    })
}

fn show(n: u128, bits: u32) -> String {
    if bits == 32 {
        Ipv4Addr::from(n as u32).to_string()
    } else {
        Ipv6Addr::from(n).to_string()
    }
}

/// `cidrsubnet(prefix, newbits, netnum)`.
pub fn subnet(prefix: &str, newbits: i64, netnum: i64) -> Result<String, String> {
    let p = parse(prefix)?;
    let newlen = p.len as i64 + newbits;
    if newbits < 0 || newlen > p.bits as i64 {
        return Err(format!(
            "insufficient address space to extend prefix of {} by {newbits}",
            p.len
        ));
    }
    if netnum < 0 || (newbits < 64 && netnum >= (1i64 << newbits)) {
        return Err(format!(
            "prefix extension of {newbits} does not accommodate a subnet numbered {netnum}"
        ));
    }
    let shift = p.bits - newlen as u32;
    let n = p.base | ((netnum as u128) << shift);
    Ok(format!("{}/{newlen}", show(n, p.bits)))
}

/// `cidrhost(prefix, hostnum)`; a negative number counts back from the end of the range.
pub fn host(prefix: &str, hostnum: i64) -> Result<String, String> {
    let p = parse(prefix)?;
    let host_bits = p.bits - p.len;
    let size: i128 = if host_bits >= 127 {
        i128::MAX
    } else {
        1i128 << host_bits
    };
    let h = hostnum as i128;
    if h >= size || h < -size {
        return Err(format!(
            "prefix of {} does not accommodate a host numbered {hostnum}",
            p.len
        ));
    }
    let offset = if h < 0 { size + h } else { h } as u128;
    Ok(show(p.base + offset, p.bits))
}

/// `cidrnetmask(prefix)`: the network mask in dotted form (IPv4 only).
pub fn netmask(prefix: &str) -> Result<String, String> {
    let p = parse(prefix)?;
    if p.bits != 32 {
        return Err("only IPv4 networks are supported".into());
    }
    let mask = if p.len == 0 {
        0
    } else {
        u32::MAX << (32 - p.len)
    };
    Ok(Ipv4Addr::from(mask).to_string())
}

/// `cidrsubnets(prefix, newbits...)`: consecutive subnets, each aligned to its own size after
/// the previous one, as OpenTofu allocates them.
pub fn subnets(prefix: &str, newbits: &[i64]) -> Result<Vec<String>, String> {
    let p = parse(prefix)?;
    let end = p.base + (1u128 << (p.bits - p.len).min(127)) - 1;
    let mut next = p.base;
    let mut out = Vec::new();
    for (i, &bits) in newbits.iter().enumerate() {
        if bits < 1 {
            return Err(format!(
                "must extend prefix by at least one bit (argument {})",
                i + 2
            ));
        }
        let len = p.len as i64 + bits;
        if len > p.bits as i64 {
            return Err(format!(
                "would extend prefix to {len} bits, which is too long for an IPv{} address",
                if p.bits == 32 { 4 } else { 6 }
            ));
        }
        let size = 1u128 << (p.bits - len as u32);
        let start = next.div_ceil(size) * size;
        if start < next || start > end || start - p.base + size - 1 > end - p.base {
            return Err(format!(
                "not enough remaining address space for a subnet with a prefix of {len} bits after {}",
                out.last().cloned().unwrap_or_else(|| prefix.to_string())
            ));
        }
        out.push(format!("{}/{len}", show(start, p.bits)));
        next = start.wrapping_add(size);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values are what Terraform 1.11.4 printed for the same calls.
    #[test]
    fn subnets_and_hosts_as_the_real_binary() {
        assert_eq!(subnet("10.0.0.0/16", 8, 2).unwrap(), "10.0.2.0/24");
        assert_eq!(subnet("fd00::/32", 16, 258).unwrap(), "fd00:0:102::/48");
        assert_eq!(subnet("172.16.0.0/12", 4, 15).unwrap(), "172.31.0.0/16");
        assert_eq!(subnet("10.1.2.0/24", 4, 15).unwrap(), "10.1.2.240/28");
        assert_eq!(host("10.0.0.0/16", 5).unwrap(), "10.0.0.5");
        assert_eq!(host("10.0.0.0/24", -1).unwrap(), "10.0.0.255");
        assert_eq!(host("192.168.1.0/28", 14).unwrap(), "192.168.1.14");
        assert!(subnet("10.0.0.0/30", 4, 1).is_err());
        assert!(host("10.0.0.0/30", 4).is_err());
        assert!(subnet("10.0.0.0/8", 4, 16).is_err());
        assert!(host("not-an-ip/8", 1).is_err());
        assert_eq!(netmask("172.16.0.0/12").unwrap(), "255.240.0.0");
        assert_eq!(netmask("10.0.0.0/31").unwrap(), "255.255.255.254");
        assert_eq!(
            subnets("10.1.0.0/16", &[4, 4, 8, 4]).unwrap(),
            [
                "10.1.0.0/20",
                "10.1.16.0/20",
                "10.1.32.0/24",
                "10.1.48.0/20"
            ]
        );
        assert_eq!(
            subnets("fd00:fd12:3456:7890::/56", &[16, 16, 16, 32]).unwrap(),
            [
                "fd00:fd12:3456:7800::/72",
                "fd00:fd12:3456:7800:100::/72",
                "fd00:fd12:3456:7800:200::/72",
                "fd00:fd12:3456:7800:300::/88"
            ]
        );
        assert!(subnets("10.0.0.0/30", &[1, 1, 1]).is_err());
    }
}
