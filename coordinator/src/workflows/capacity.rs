//! Which failures mean "no capacity here" (so a stack with a `fallback` moves to its next
//! candidate) rather than a mistake: the clouds' own error codes and messages, kept in one
//! list. Matched against the error lines of the failed run's log (tofu's diagnostics carry the
//! provider's message).

/// Error codes and phrases of capacity and quota failures, by cloud (matched without case).
const CAPACITY: &[&str] = &[
    // AWS EC2
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacityOnHost",
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "Unsupported: Your requested instance type",
    // Google Cloud
    "ZONE_RESOURCE_POOL_EXHAUSTED",
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
    "STOCKOUT",
    "QUOTA_EXCEEDED",
    "Quota '",
    // Azure
    "SkuNotAvailable",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OperationNotAllowed: Operation could not be completed as it results in exceeding approved",
    // Generic
    "insufficient capacity",
    "quota exceeded",
];

/// The capacity error found in these log lines, if any (the first match, as the list names it).
pub fn capacity_error<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if let Some(p) = CAPACITY
            .iter()
            .find(|p| lower.contains(&p.to_ascii_lowercase()))
        {
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clouds_capacity_errors_are_recognised() {
        let aws = r#"{"@level":"error","@message":"Error: creating EC2 Instance: operation error EC2: RunInstances, https response error StatusCode: 500, api error InsufficientInstanceCapacity: We currently do not have sufficient p4d.24xlarge capacity"}"#;
        assert_eq!(capacity_error([aws]), Some("InsufficientInstanceCapacity"));
        let gcp = "Error: Error waiting for instance to create: The zone 'projects/p/zones/us-central1-a' does not have enough resources available to fulfill the request. '(resource type:compute)'. ZONE_RESOURCE_POOL_EXHAUSTED";
        assert_eq!(
            capacity_error(["plan ok", gcp]),
            Some("ZONE_RESOURCE_POOL_EXHAUSTED")
        );
        let azure = "Code=\"SkuNotAvailable\" Message=\"The requested VM size Standard_ND96asr_v4 is currently not available in location 'westeurope'.\"";
        assert_eq!(capacity_error([azure]), Some("SkuNotAvailable"));
        assert_eq!(
            capacity_error(["Error: Quota exceeded for quota metric 'GPUs'"]),
            Some("quota exceeded")
        );
    }

    #[test]
    fn other_failures_are_not_capacity() {
        for line in [
            "Error: Invalid reference: A reference to a resource type must be followed by at least one attribute access",
            "Error: creating EC2 Instance: UnauthorizedOperation: You are not authorized",
            "Error: local-exec provisioner error: exit status 1",
        ] {
            assert_eq!(capacity_error([line]), None, "{line}");
        }
    }
}
