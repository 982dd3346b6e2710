use super::*;
use serde_json::json;

const PIPELINE: &str = r#"
workflow {
  approval = "auto"
}

stack "network" {
  source    = "./network"
  workspace = "net/${each.key}"
  for_each  = { eu = "10.1.0.0/16", us = "10.2.0.0/16" }
  inputs    = { cidr = each.value }
  tags      = { region = each.key }
}

stack "gpu" {
  source    = "./gpu"
  workspace = "gpu/${each.key}"
  for_each  = ["us", "eu"]
  pool      = "gpu"
  inputs = {
    subnet = stack.network[each.key].outputs.subnet_id
    name   = "trainer-${each.key}"
  }
}

stack "report" {
  source     = "./report"
  workspace  = "report"
  inputs     = { first = stack.gpu["eu"].outputs.ip, all_net = stack.network["us"].outputs }
  depends_on = ["network"]
}
"#;

fn problems(text: &str) -> String {
    match parse("wf.hcl", text) {
        Ok(_) => String::new(),
        Err(p) => describe(&p),
    }
}

#[test]
fn a_pipeline_expands_into_targets_with_their_dependencies() {
    let wf = parse("wf.hcl", PIPELINE).unwrap();
    assert_eq!(wf.approval, Approval::Auto);
    assert_eq!(wf.sources(), ["./network", "./gpu", "./report"]);
    let t = expand(&wf, "wf.hcl").unwrap();
    let keys: Vec<&str> = t.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "network[\"eu\"]",
            "network[\"us\"]",
            "gpu[\"eu\"]",
            "gpu[\"us\"]",
            "report"
        ]
    );
    assert_eq!(t[0].workspace, "net/eu");
    assert_eq!(t[0].tags["region"], "eu");
    assert!(t[0].deps.is_empty());
    assert_eq!(t[2].deps, ["network[\"eu\"]"]);
    assert_eq!(t[2].pool, "gpu");
    assert_eq!(
        t[4].deps,
        ["gpu[\"eu\"]", "network[\"eu\"]", "network[\"us\"]"]
    );
}

#[test]
fn inputs_are_evaluated_from_the_upstreams_outputs() {
    let wf = parse("wf.hcl", PIPELINE).unwrap();
    let mut up = Upstream::new();
    let mut o = Outputs::default();
    o.0.insert("subnet_id".into(), (json!("subnet-1"), false));
    o.0.insert("password".into(), (json!("hunter2-hunter2"), true));
    up.insert("network[\"us\"]".into(), o);
    let (v, sensitive) = inputs(&wf, "gpu", &Some(("us".into(), json!("us"))), &up).unwrap();
    assert_eq!(v["subnet"], json!("subnet-1"));
    assert_eq!(v["name"], json!("trainer-us"));
    assert!(sensitive.is_empty());
    // The whole outputs object carries a sensitive one: the input is sensitive.
    let mut g = Outputs::default();
    g.0.insert("ip".into(), (json!("10.0.0.9"), false));
    up.insert("gpu[\"eu\"]".into(), g);
    let (v, sensitive) = inputs(&wf, "report", &None, &up).unwrap();
    assert_eq!(v["first"], json!("10.0.0.9"));
    assert_eq!(v["all_net"]["subnet_id"], json!("subnet-1"));
    assert_eq!(sensitive.into_iter().collect::<Vec<_>>(), ["all_net"]);
    // An output the state lacks is named, with what it has.
    up.get_mut("network[\"us\"]").unwrap().0.remove("subnet_id");
    let e = inputs(&wf, "gpu", &Some(("us".into(), json!("us"))), &up).unwrap_err();
    assert_eq!(
        e,
        "input subnet: network[\"us\"] has no output \"subnet_id\" in its state (it has: password)"
    );
}

#[test]
fn outputs_are_read_from_a_state_file() {
    let state = br#"{"version":4,"outputs":{"a":{"value":"x","type":"string"},"b":{"value":[1],"type":["list","number"],"sensitive":true}}}"#;
    let o = Outputs::from_state(state).unwrap();
    assert_eq!(o.0["a"], (json!("x"), false));
    assert_eq!(o.0["b"], (json!([1]), true));
    assert!(Outputs::from_state(b"nope").is_err());
}

#[test]
fn a_cycle_is_named_with_its_position() {
    let text = "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a\"\n  inputs = { x = stack.b.outputs.y }\n}\nstack \"b\" {\n  source = \"./b\"\n  workspace = \"b\"\n  depends_on = [\"c\"]\n}\nstack \"c\" {\n  source = \"./c\"\n  workspace = \"c\"\n  depends_on = [stack.a]\n}\n";
    assert_eq!(
        problems(text),
        "wf.hcl:1:1: dependency cycle: a -> b -> c -> a"
    );
}

#[test]
fn bad_references_and_syntax_are_reported_with_positions() {
    let unknown = "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a\"\n  inputs = {\n    x = stack.nope.outputs.y\n  }\n}\n";
    assert_eq!(
        problems(unknown),
        "wf.hcl:5:5: no stack named \"nope\" (stacks: a)"
    );
    let syntax = "stack \"a\" {\n  source = \n}\n";
    assert!(
        problems(syntax).starts_with("wf.hcl:2:12: not valid HCL"),
        "{}",
        problems(syntax)
    );
    let fanned = "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a-${each.key}\"\n  for_each = [\"x\"]\n}\nstack \"b\" {\n  source = \"./b\"\n  workspace = \"b\"\n  inputs = { v = stack.a.outputs.o }\n}\n";
    assert!(
        problems(fanned).starts_with("wf.hcl:9:14: stack \"a\" has for_each: say which one"),
        "{}",
        problems(fanned)
    );
    let missing = "stack \"a\" {\n  workspace = \"a\"\n  colour = \"red\"\n}\n";
    assert_eq!(
        problems(missing),
        "wf.hcl:3:3: unknown attribute `colour` in stack \"a\": it takes source, workspace, pool, inputs, depends_on, for_each, tags\nwf.hcl:1:1: stack \"a\" has no `source`: it is required"
    );
    let early = "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a\"\n}\nstack \"b\" {\n  source = \"./b\"\n  workspace = \"b-${stack.a.outputs.x}\"\n}\n";
    assert!(problems(early).contains("must be known when the workflow starts"));
}

#[test]
fn expansion_refuses_shared_workspaces_and_unknown_keys() {
    let shared = "stack \"a\" {\n  source = \"./a\"\n  workspace = \"same\"\n  for_each = [\"x\", \"y\"]\n}\n";
    let wf = parse("wf.hcl", shared).unwrap();
    let e = describe(&expand(&wf, "wf.hcl").unwrap_err());
    assert!(e.contains("both use workspace \"same\""), "{e}");
    let key = "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a-${each.key}\"\n  for_each = [\"x\"]\n}\nstack \"b\" {\n  source = \"./b\"\n  workspace = \"b\"\n  inputs = { v = stack.a[\"z\"].outputs.o }\n}\n";
    let wf = parse("wf.hcl", key).unwrap();
    let e = describe(&expand(&wf, "wf.hcl").unwrap_err());
    assert!(e.contains("stack \"a\" has no for_each key \"z\""), "{e}");
}

#[test]
fn a_fallback_names_a_variable_and_its_candidates() {
    let ok = "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a\"\n  fallback {\n    variable = \"region\"\n    values = [\"us-east-1\", \"us-west-2\"]\n  }\n}\n";
    let f = parse("wf.hcl", ok).unwrap().stacks[0]
        .fallback
        .clone()
        .unwrap();
    assert_eq!((f.variable.as_str(), f.values.len()), ("region", 2));
    let one = ok.replace(", \"us-west-2\"", "");
    assert!(
        problems(&one).starts_with("wf.hcl:4:3: fallback takes variable"),
        "{}",
        problems(&one)
    );
    let both = ok.replace(
        "workspace = \"a\"",
        "workspace = \"a\"\n  inputs = { region = \"x\" }",
    );
    assert!(
        problems(&both).contains("region is set by the fallback"),
        "{}",
        problems(&both)
    );
}
