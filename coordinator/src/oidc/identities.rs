//! Per-workspace identity configurations (pure): what audience a workspace's ID tokens carry
//! and which cloud roles they are presented to, checked when set; and which configuration a
//! workspace gets when several globs match it.
//!
//! The most specific glob wins: a glob without wildcards (one exact workspace) beats any glob
//! with them; then the glob with more literal characters (`ml/gpu-*` beats `ml/*`, which
//! beats `**`); then the one with fewer wildcards; then the name, alphabetically.

use crate::auth::WorkspaceGlob;
use crate::runs::Phase;

/// A configuration's name: lowercase letters, digits, `-`, `_` and `.`, at most 64.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdentityName(String);

impl IdentityName {
    pub fn parse(text: &str) -> Result<IdentityName, String> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !ok {
            return Err(format!(
                "{text:?} is not an identity name: use 1 to 64 lowercase letters, digits, '-', '_' or '.', e.g. ml-aws"
            ));
        }
        Ok(IdentityName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdentityName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The AWS role(s) tokens are exchanged for (`AssumeRoleWithWebIdentity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwsRoles {
    /// One role for plan and apply.
    Both(String),
    /// A (read-only) role for plans, a writing one for applies.
    PerPhase { plan: String, apply: String },
}

impl AwsRoles {
    /// The role a task of `phase` assumes.
    pub fn for_phase(&self, phase: Phase) -> &str {
        match (self, phase) {
            (AwsRoles::Both(r), _) => r,
            (AwsRoles::PerPhase { plan, .. }, Phase::Plan) => plan,
            (AwsRoles::PerPhase { apply, .. }, Phase::Apply) => apply,
        }
    }
}

/// Google workload identity federation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gcp {
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/PR`.
    pub audience: String,
    /// The service account to impersonate; none: the pool principal acts directly.
    pub service_account: Option<String>,
}

/// Azure (Entra) workload identity federation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Azure {
    pub client_id: String,
    pub tenant_id: String,
    pub subscription_id: String,
}

/// A named identity configuration for the workspaces its glob matches.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: IdentityName,
    pub workspaces: WorkspaceGlob,
    /// The tokens' `aud`; none: the coordinator's default audience.
    pub audience: Option<String>,
    pub aws: Option<AwsRoles>,
    pub gcp: Option<Gcp>,
    pub azure: Option<Azure>,
    pub updated_by: String,
    pub updated_ms: i64,
}

/// A configuration as typed (flat, empty = not given), before it is checked.
#[derive(Clone, Debug, Default)]
pub struct IdentityFields {
    pub name: String,
    pub workspaces: String,
    pub audience: String,
    pub aws_role_arn: String,
    pub aws_plan_role_arn: String,
    pub aws_apply_role_arn: String,
    pub gcp_audience: String,
    pub gcp_service_account: String,
    pub azure_client_id: String,
    pub azure_tenant_id: String,
    pub azure_subscription_id: String,
}

fn given(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn aws_roles(f: &IdentityFields) -> Result<Option<AwsRoles>, String> {
    let check = |flag: &str, arn: String| -> Result<String, String> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "iam"
            && parts[4].len() == 12
            && parts[4].chars().all(|c| c.is_ascii_digit())
            && parts[5].starts_with("role/")
            && parts[5].len() > 5;
        if ok {
            Ok(arn)
        } else {
            Err(format!(
                "{flag} {arn:?} is not an IAM role ARN: use arn:aws:iam::123456789012:role/NAME"
            ))
        }
    };
    let both = given(&f.aws_role_arn);
    let plan = given(&f.aws_plan_role_arn);
    let apply = given(&f.aws_apply_role_arn);
    match (both, plan, apply) {
        (None, None, None) => Ok(None),
        (Some(r), None, None) => Ok(Some(AwsRoles::Both(check("--aws-role-arn", r)?))),
        (None, Some(p), Some(a)) => Ok(Some(AwsRoles::PerPhase {
            plan: check("--aws-plan-role-arn", p)?,
            apply: check("--aws-apply-role-arn", a)?,
        })),
        _ => Err("give either --aws-role-arn (one role for both phases) or both --aws-plan-role-arn and --aws-apply-role-arn".into()),
    }
}

fn gcp(f: &IdentityFields) -> Result<Option<Gcp>, String> {
    let sa = given(&f.gcp_service_account);
    let Some(audience) = given(&f.gcp_audience) else {
        return match sa {
            Some(_) => Err(
                "--gcp-service-account needs --gcp-audience (the workload identity provider)"
                    .into(),
            ),
            None => Ok(None),
        };
    };
    let rest = audience.strip_prefix("//iam.googleapis.com/projects/");
    let ok = rest.is_some_and(|r| {
        let p: Vec<&str> = r.split('/').collect();
        p.len() == 7
            && p[0].chars().all(|c| c.is_ascii_digit())
            && !p[0].is_empty()
            && p[1] == "locations"
            && p[2] == "global"
            && p[3] == "workloadIdentityPools"
            && !p[4].is_empty()
            && p[5] == "providers"
            && !p[6].is_empty()
    });
    if !ok {
        return Err(format!("--gcp-audience {audience:?} is not a workload identity provider: use //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER"));
    }
    if let Some(s) = &sa {
        if !(s.contains('@') && s.ends_with(".gserviceaccount.com")) {
            return Err(format!("--gcp-service-account {s:?} is not a service account e-mail: use NAME@PROJECT.iam.gserviceaccount.com"));
        }
    }
    Ok(Some(Gcp {
        audience,
        service_account: sa,
    }))
}

/// Whether `s` is a GUID (8-4-4-4-12 hex digits), as Azure ids are.
fn is_guid(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    p.iter().map(|x| x.len()).eq([8, 4, 4, 4, 12])
        && p.iter().all(|x| x.chars().all(|c| c.is_ascii_hexdigit()))
}

fn azure(f: &IdentityFields) -> Result<Option<Azure>, String> {
    let ids = [
        ("--azure-client-id", given(&f.azure_client_id)),
        ("--azure-tenant-id", given(&f.azure_tenant_id)),
        ("--azure-subscription-id", given(&f.azure_subscription_id)),
    ];
    if ids.iter().all(|(_, v)| v.is_none()) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (flag, v) in ids {
        match v {
            None => return Err("Azure needs all of --azure-client-id, --azure-tenant-id and --azure-subscription-id".into()),
            Some(v) if !is_guid(&v) => return Err(format!("{flag} {v:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")),
            Some(v) => out.push(v),
        }
    }
    Ok(Some(Azure {
        subscription_id: out.pop().unwrap_or_default(),
        tenant_id: out.pop().unwrap_or_default(),
        client_id: out.pop().unwrap_or_default(),
    }))
}

impl Identity {
    /// Checks a configuration as typed, saying which flag is wrong and how to write it.
    pub fn check(f: &IdentityFields, by: &str, now_ms: i64) -> Result<Identity, String> {
        let audience = given(&f.audience);
        if let Some(a) = &audience {
            if a.len() > 500 || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("--audience {a:?} must be one word of at most 500 characters, e.g. sts.amazonaws.com"));
            }
        }
        Ok(Identity {
            name: IdentityName::parse(f.name.trim())?,
            workspaces: WorkspaceGlob::parse(&f.workspaces)?,
            audience,
            aws: aws_roles(f)?,
            gcp: gcp(f)?,
            azure: azure(f)?,
            updated_by: by.to_string(),
            updated_ms: now_ms,
        })
    }

    /// The configuration as typed (flat, empty = not set): for storing and showing.
    pub fn fields(&self) -> IdentityFields {
        let (role, plan, apply) = match &self.aws {
            None => Default::default(),
            Some(AwsRoles::Both(r)) => (r.clone(), String::new(), String::new()),
            Some(AwsRoles::PerPhase { plan, apply }) => {
                (String::new(), plan.clone(), apply.clone())
            }
        };
        let gcp = self.gcp.clone();
        let az = self.azure.clone();
        IdentityFields {
            name: self.name.to_string(),
            workspaces: self.workspaces.as_str().to_string(),
            audience: self.audience.clone().unwrap_or_default(),
            aws_role_arn: role,
            aws_plan_role_arn: plan,
            aws_apply_role_arn: apply,
            gcp_audience: gcp.as_ref().map(|g| g.audience.clone()).unwrap_or_default(),
            gcp_service_account: gcp.and_then(|g| g.service_account).unwrap_or_default(),
            azure_client_id: az.as_ref().map(|a| a.client_id.clone()).unwrap_or_default(),
            azure_tenant_id: az.as_ref().map(|a| a.tenant_id.clone()).unwrap_or_default(),
            azure_subscription_id: az.map(|a| a.subscription_id).unwrap_or_default(),
        }
    }
}

/// How specific a glob is; greater wins (see the module's comment).
fn specificity(glob: &str) -> (bool, usize, std::cmp::Reverse<usize>) {
    let wild = glob.chars().filter(|c| "*?".contains(*c)).count();
    (wild == 0, glob.len() - wild, std::cmp::Reverse(wild))
}

/// The configuration `workspace` gets: the most specific of those whose glob matches.
pub fn most_specific<'a>(all: &'a [Identity], workspace: &str) -> Option<&'a Identity> {
    all.iter()
        .filter(|i| i.workspaces.matches(workspace))
        .max_by(|a, b| {
            specificity(a.workspaces.as_str())
                .cmp(&specificity(b.workspaces.as_str()))
                .then_with(|| b.name.cmp(&a.name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(name: &str, glob: &str) -> IdentityFields {
        IdentityFields {
            name: name.into(),
            workspaces: glob.into(),
            ..Default::default()
        }
    }

    fn id(name: &str, glob: &str) -> Identity {
        Identity::check(&fields(name, glob), "admin", 0).unwrap()
    }

    #[test]
    fn the_most_specific_glob_wins() {
        let all = vec![
            id("all", "**"),
            id("ml", "ml/*"),
            id("gpu", "ml/gpu-*"),
            id("exact", "ml/gpu-a100"),
            id("fewer", "ml/?p?-x"),
        ];
        let pick = |w: &str| most_specific(&all, w).map(|i| i.name.to_string());
        assert_eq!(pick("ml/gpu-a100").as_deref(), Some("exact"));
        assert_eq!(pick("ml/gpu-h100").as_deref(), Some("gpu"));
        assert_eq!(pick("ml/cpu").as_deref(), Some("ml"));
        assert_eq!(pick("prod/x").as_deref(), Some("all"));
        assert_eq!(
            pick("ml/gpu-x").as_deref(),
            Some("gpu"),
            "more literal characters"
        );
        assert_eq!(pick("ml/gpu-x/y").as_deref(), Some("all"));
        let ties = vec![id("b", "ml/?pu"), id("a", "ml/g?u")];
        assert_eq!(most_specific(&ties, "ml/gpu").unwrap().name.as_str(), "a");
        assert!(most_specific(&[], "x").is_none());
    }

    #[test]
    fn aws_takes_one_role_or_one_per_phase() {
        let mut f = fields("aws", "ml/*");
        f.aws_role_arn = "arn:aws:iam::123456789012:role/tofu".into();
        let i = Identity::check(&f, "a", 0).unwrap();
        let roles = i.aws.as_ref().unwrap();
        assert_eq!(
            roles.for_phase(Phase::Plan),
            "arn:aws:iam::123456789012:role/tofu"
        );
        f.aws_plan_role_arn = "arn:aws:iam::123456789012:role/read".into();
        assert!(Identity::check(&f, "a", 0).unwrap_err().contains("either"));
        f.aws_role_arn.clear();
        assert!(Identity::check(&f, "a", 0).unwrap_err().contains("both"));
        f.aws_apply_role_arn = "arn:aws:iam::123456789012:role/write".into();
        let i = Identity::check(&f, "a", 0).unwrap();
        let roles = i.aws.as_ref().unwrap();
        assert_eq!(
            roles.for_phase(Phase::Plan),
            "arn:aws:iam::123456789012:role/read"
        );
        assert_eq!(
            roles.for_phase(Phase::Apply),
            "arn:aws:iam::123456789012:role/write"
        );
        f.aws_apply_role_arn = "arn:aws:iam::1234:role/write".into();
        assert!(Identity::check(&f, "a", 0)
            .unwrap_err()
            .contains("--aws-apply-role-arn"));
        assert_eq!(
            i.fields().aws_plan_role_arn,
            "arn:aws:iam::123456789012:role/read"
        );
    }

    #[test]
    fn gcp_and_azure_are_checked() {
        let mut f = fields("g", "**");
        f.gcp_service_account = "tofu@p.iam.gserviceaccount.com".into();
        assert!(Identity::check(&f, "a", 0)
            .unwrap_err()
            .contains("--gcp-audience"));
        f.gcp_audience = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/p/providers/pr".into();
        let g = Identity::check(&f, "a", 0).unwrap().gcp.unwrap();
        assert_eq!(
            g.service_account.as_deref(),
            Some("tofu@p.iam.gserviceaccount.com")
        );
        f.gcp_audience = "https://iam.googleapis.com/projects/123".into();
        assert!(Identity::check(&f, "a", 0).is_err());
        let mut f = fields("az", "**");
        f.azure_client_id = "00000000-0000-0000-0000-000000000001".into();
        assert!(Identity::check(&f, "a", 0).unwrap_err().contains("all of"));
        f.azure_tenant_id = "00000000-0000-0000-0000-000000000002".into();
        f.azure_subscription_id = "not-a-guid".into();
        assert!(Identity::check(&f, "a", 0).unwrap_err().contains("GUID"));
        f.azure_subscription_id = "00000000-0000-0000-0000-000000000003".into();
        let az = Identity::check(&f, "a", 0).unwrap().azure.unwrap();
        assert_eq!(az.client_id, "00000000-0000-0000-0000-000000000001");
        assert_eq!(az.tenant_id, "00000000-0000-0000-0000-000000000002");
        assert_eq!(az.subscription_id, "00000000-0000-0000-0000-000000000003");
    }

    #[test]
    fn names_and_audiences_are_checked() {
        assert!(IdentityName::parse("ml-aws").is_ok());
        assert!(IdentityName::parse("ML").is_err());
        assert!(IdentityName::parse("").is_err());
        let mut f = fields("x", "**");
        f.audience = "a b".into();
        assert!(Identity::check(&f, "a", 0)
            .unwrap_err()
            .contains("--audience"));
        f.workspaces = "ml/(x)".into();
        f.audience.clear();
        assert!(Identity::check(&f, "a", 0).is_err());
    }
}
