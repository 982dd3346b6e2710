//! `data "terraform_remote_state"` over the `local` and `http` backends: the outputs of another
//! state, read while planning (`Refreshing...` in the `-json` stream), bound as
//! `data.terraform_remote_state.NAME`, recorded in state and in the plan's `prior_state` as the
//! real binary does. The outputs carry no sensitivity (the real binary drops it too).

use crate::config::{DataDecl, Module};
use crate::eval;
use crate::state::{self, Backend, Instance, Resource};
use crate::ui::{Diag, Ui};
use serde_json::{json, Map, Value};

/// Where the data sources' values sit in the map of resources given to a scope: bound as `data`,
/// not as a `terraform_data` resource (no resource name can hold a NUL).
pub const DATA_KEY: &str = "\0data";

/// One read data source: its name and its attributes.
pub type Read = (String, Value);

/// Reads every data source of the module with `ctx` (variables and locals in scope).
pub fn read_all(m: &Module, ctx: &hcl::eval::Context) -> Result<Vec<Read>, Diag> {
    m.data.iter().map(|d| read(m, d, ctx)).collect()
}

fn read(m: &Module, d: &DataDecl, ctx: &hcl::eval::Context) -> Result<Read, Diag> {
    let at = format!("data.terraform_remote_state.{}", d.name);
    let ev = |e: &Option<hcl::Expression>| -> Result<Value, Diag> {
        let Some(e) = e else { return Ok(Value::Null) };
        let v = eval::eval(e, ctx).map_err(|e| Diag::error("Invalid expression", e))?;
        if eval::is_unknown(&v) {
            return Err(Diag::error("Invalid data source configuration", format!("The configuration of {at} depends on values known only after apply; the tofu stand-in reads data sources only while planning.")));
        }
        Ok(v)
    };
    let backend = ev(&Some(d.backend.clone()))?;
    let (config, defaults) = (ev(&d.config)?, ev(&d.defaults)?);
    let kind = backend.as_str().unwrap_or_default();
    if kind != "local" && kind != "http" {
        return Err(Diag::error("Invalid backend configuration", format!("{at}: the tofu stand-in reads remote state only from the \"local\" and \"http\" backends, not {backend}; run this module with real OpenTofu.")));
    }
    let cfg = config.as_object().cloned().unwrap_or_default();
    let st = Backend::open(kind, &cfg, &m.dir, "default")?.read()?;
    let Some(st) = st else {
        return Err(Diag::error(
            "Unable to find remote state",
            "No stored state was found for the given workspace in the given backend.",
        )
        .with_address(at));
    };
    let mut outputs: Map<String, Value> = defaults.as_object().cloned().unwrap_or_default();
    outputs.extend(st.outputs.into_iter().map(|(k, o)| (k, o.value)));
    let attrs = json!({
        "backend": backend, "config": config, "defaults": defaults,
        "outputs": outputs, "workspace": null,
    });
    Ok((d.name.clone(), attrs))
}

/// The data sources as a scope sees them, under `DATA_KEY`.
pub fn bind(resources: &mut Map<String, Value>, read: &[Read]) {
    if read.is_empty() {
        return;
    }
    let by_name: Map<String, Value> = read.iter().cloned().collect();
    resources.insert(
        DATA_KEY.into(),
        json!({ "terraform_remote_state": by_name }),
    );
}

/// `Refreshing...` and `Refresh complete` for each data source, as the real binary reports
/// reading one while planning.
pub fn report(ui: &Ui, read: &[Read]) {
    for (name, _) in read {
        let a = format!("data.terraform_remote_state.{name}");
        let resource = json!({
            "addr": a, "module": "", "resource": a, "implied_provider": "terraform",
            "resource_type": "terraform_remote_state", "resource_name": name, "resource_key": null,
        });
        let start = json!({"hook": {"resource": resource, "action": "read"}});
        ui.line("info", "apply_start", &format!("{a}: Refreshing..."), start);
        ui.human(&format!("{a}: Reading..."));
        let done = json!({"hook": {"resource": resource, "action": "read", "elapsed_seconds": 0}});
        let msg = format!("{a}: Refresh complete after 0s");
        ui.line("info", "apply_complete", &msg, done);
        ui.human(&format!("{a}: Read complete after 0s"));
    }
}

/// The data sources as state records them.
pub fn state_resources(read: &[Read]) -> Vec<Resource> {
    read.iter()
        .map(|(name, attrs)| {
            let mut a = attrs.clone();
            for k in ["config", "defaults", "outputs"] {
                a[k] = state::wrap_dynamic(&Some(attrs[k].clone()).filter(|v| !v.is_null()));
            }
            Resource {
                module: None,
                mode: "data".into(),
                typ: "terraform_remote_state".into(),
                name: name.clone(),
                each: None,
                provider: state::PROVIDER.into(),
                instances: vec![Instance {
                    index_key: None,
                    status: None,
                    schema_version: 0,
                    attributes: a,
                    sensitive_attributes: Vec::new(),
                    dependencies: Vec::new(),
                }],
            }
        })
        .collect()
}

/// One data source instance in `jsonstate` shape.
pub fn instance_json(r: &Resource, i: &Instance) -> Value {
    let mut values = i.attributes.clone();
    for k in ["config", "defaults", "outputs"] {
        values[k] = state::unwrap_dynamic(i.attributes.get(k)).unwrap_or(Value::Null);
    }
    json!({
        "address": format!("data.{}.{}", r.typ, r.name), "mode": "data", "type": r.typ,
        "name": r.name, "provider_name": "terraform.io/builtin/terraform",
        "schema_version": i.schema_version, "sensitive_values": eval::sensitive_mirror(&values),
        "values": values,
    })
}
