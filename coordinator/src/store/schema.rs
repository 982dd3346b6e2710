//! Migrations: one list, written once in portable SQL; `{BLOB}` and `{AUTOID}` are the only
//! words that differ between SQLite and PostgreSQL.

pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  workspace TEXT NOT NULL,
  pool TEXT NOT NULL,
  kind TEXT NOT NULL,
  state TEXT NOT NULL,
  bundle_digest TEXT NOT NULL,
  variables TEXT NOT NULL,
  var_files TEXT NOT NULL,
  auto_approve BIGINT NOT NULL,
  submitted_by TEXT NOT NULL,
  commit_sha TEXT NOT NULL,
  pipeline_id TEXT NOT NULL,
  traceparent TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  has_changes BIGINT NOT NULL DEFAULT 0,
  add_count BIGINT NOT NULL DEFAULT 0,
  change_count BIGINT NOT NULL DEFAULT 0,
  destroy_count BIGINT NOT NULL DEFAULT 0,
  outputs TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  plan_digest TEXT NOT NULL DEFAULT '',
  plan_json_digest TEXT NOT NULL DEFAULT '',
  deadline_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_workspace ON runs (workspace, created_ms);
CREATE INDEX runs_by_state ON runs (state, deadline_ms);
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  phase TEXT NOT NULL,
  attempt BIGINT NOT NULL,
  state TEXT NOT NULL,
  pool TEXT NOT NULL,
  agent_id TEXT NOT NULL DEFAULT '',
  epoch BIGINT NOT NULL DEFAULT 0,
  lease_expires_ms BIGINT NOT NULL DEFAULT 0,
  cancel_requested BIGINT NOT NULL DEFAULT 0,
  created_ms BIGINT NOT NULL,
  finished_ms BIGINT NOT NULL DEFAULT 0,
  exit_code BIGINT NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  token_sha256 TEXT NOT NULL DEFAULT ''
);
CREATE INDEX tasks_by_run ON tasks (run_id);
CREATE INDEX tasks_by_lease ON tasks (state, lease_expires_ms);
CREATE TABLE task_attempts (
  task_id TEXT NOT NULL,
  attempt BIGINT NOT NULL,
  run_id TEXT NOT NULL,
  phase TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  epoch BIGINT NOT NULL,
  claimed_ms BIGINT NOT NULL,
  ended_ms BIGINT NOT NULL DEFAULT 0,
  outcome TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (task_id, attempt)
);
CREATE TABLE outbox (
  id {AUTOID},
  task_id TEXT NOT NULL,
  attempt BIGINT NOT NULL,
  pool TEXT NOT NULL,
  payload {BLOB} NOT NULL,
  traceparent TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  sent_ms BIGINT NOT NULL DEFAULT 0,
  publish_attempts BIGINT NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_unsent ON outbox (sent_ms, id);
CREATE TABLE transitions (
  id {AUTOID},
  run_id TEXT NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  actor TEXT NOT NULL,
  reason TEXT NOT NULL,
  at_ms BIGINT NOT NULL
);
CREATE INDEX transitions_by_run ON transitions (run_id, id);
CREATE TABLE events (
  task_id TEXT NOT NULL,
  attempt BIGINT NOT NULL,
  seq BIGINT NOT NULL,
  run_id TEXT NOT NULL,
  phase_order BIGINT NOT NULL,
  unix_ms BIGINT NOT NULL,
  stream BIGINT NOT NULL,
  line TEXT NOT NULL,
  PRIMARY KEY (task_id, attempt, seq)
);
CREATE INDEX events_by_run ON events (run_id, phase_order, attempt, seq);
CREATE TABLE blobs (
  digest TEXT PRIMARY KEY,
  size BIGINT NOT NULL,
  data {BLOB} NOT NULL,
  created_ms BIGINT NOT NULL
);
CREATE TABLE agents (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  pools TEXT NOT NULL,
  labels TEXT NOT NULL,
  capacity BIGINT NOT NULL,
  state TEXT NOT NULL,
  registered_ms BIGINT NOT NULL,
  last_seen_ms BIGINT NOT NULL
);
CREATE TABLE counters (
  name TEXT PRIMARY KEY,
  value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('epoch', 0);
CREATE TABLE state_versions (
  workspace TEXT NOT NULL,
  version BIGINT NOT NULL,
  serial BIGINT NOT NULL,
  lineage TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size BIGINT NOT NULL,
  data {BLOB} NOT NULL,
  run_id TEXT NOT NULL,
  attempt BIGINT NOT NULL,
  actor TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  PRIMARY KEY (workspace, version)
);
CREATE TABLE state_locks (
  workspace TEXT PRIMARY KEY,
  lock_id TEXT NOT NULL,
  info TEXT NOT NULL,
  task_id TEXT NOT NULL,
  epoch BIGINT NOT NULL,
  owner TEXT NOT NULL,
  created_ms BIGINT NOT NULL
)
"#,
    ),
    (
        2,
        r#"
CREATE TABLE state_events (
  id {AUTOID},
  workspace TEXT NOT NULL,
  version BIGINT NOT NULL,
  action TEXT NOT NULL,
  actor TEXT NOT NULL,
  reason TEXT NOT NULL,
  at_ms BIGINT NOT NULL
);
CREATE INDEX state_events_by_workspace ON state_events (workspace, id)
"#,
    ),
    (
        3,
        r#"
ALTER TABLE runs ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN limit_hit TEXT NOT NULL DEFAULT ''
"#,
    ),
    (
        4,
        r#"
ALTER TABLE agents ADD COLUMN secret_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN lease_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN sensitive_variables TEXT NOT NULL DEFAULT '[]'
"#,
    ),
    (
        5,
        r#"
CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  user_name TEXT NOT NULL,
  sha256 TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  expires_ms BIGINT,
  last_used_ms BIGINT,
  revoked_ms BIGINT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_name);
CREATE TABLE role_grants (
  user_name TEXT NOT NULL,
  role TEXT NOT NULL,
  workspaces TEXT NOT NULL,
  granted_by TEXT NOT NULL,
  granted_ms BIGINT NOT NULL,
  PRIMARY KEY (user_name, role, workspaces)
);
CREATE TABLE workspace_rules (
  workspaces TEXT PRIMARY KEY,
  four_eyes BIGINT NOT NULL,
  sources TEXT NOT NULL,
  digests TEXT NOT NULL,
  pools TEXT NOT NULL,
  updated_by TEXT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE TABLE pool_rules (
  pool TEXT PRIMARY KEY,
  workspaces TEXT NOT NULL,
  updated_by TEXT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE TABLE join_tokens (
  id TEXT PRIMARY KEY,
  sha256 TEXT NOT NULL UNIQUE,
  pools TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL,
  revoked_ms BIGINT
);
ALTER TABLE agents ADD COLUMN revoked_ms BIGINT;
ALTER TABLE agents ADD COLUMN credential_expires_ms BIGINT;
ALTER TABLE runs ADD COLUMN source TEXT NOT NULL DEFAULT ''
"#,
    ),
    (
        6,
        r#"
CREATE TABLE audit_log (
  seq BIGINT PRIMARY KEY,
  at_ms BIGINT NOT NULL,
  kind TEXT NOT NULL,
  actor TEXT NOT NULL,
  workspace TEXT NOT NULL,
  run_id TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_sha256 TEXT NOT NULL,
  sha256 TEXT NOT NULL
);
CREATE INDEX audit_log_by_run ON audit_log (run_id, seq);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace, seq);
CREATE INDEX audit_log_by_sha256 ON audit_log (sha256)
"#,
    ),
    (
        7,
        r#"
CREATE TABLE signing_keys (
  id TEXT PRIMARY KEY,
  public_key {BLOB} NOT NULL,
  sealed_private_key {BLOB} NOT NULL,
  created_ms BIGINT NOT NULL,
  active BIGINT UNIQUE,
  verify_until_ms BIGINT NOT NULL DEFAULT 0
);
ALTER TABLE tasks ADD COLUMN envelope_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN envelope_expires_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tasks_by_envelope_expiry ON tasks (state, envelope_expires_ms)
"#,
    ),
    (
        8,
        r#"
CREATE TABLE connections (
  name TEXT PRIMARY KEY,
  workspaces TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  version BIGINT NOT NULL,
  updated_by TEXT NOT NULL,
  updated_ms BIGINT NOT NULL,
  last_used_ms BIGINT NOT NULL DEFAULT 0,
  phases TEXT NOT NULL DEFAULT '["plan","apply"]'
);
CREATE TABLE connection_versions (
  name TEXT NOT NULL,
  version BIGINT NOT NULL,
  keys TEXT NOT NULL,
  sealed_values {BLOB} NOT NULL,
  created_by TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  PRIMARY KEY (name, version)
)
"#,
    ),
    (
        9,
        r#"
CREATE TABLE oidc_keys (
  id TEXT PRIMARY KEY,
  modulus TEXT NOT NULL,
  exponent TEXT NOT NULL,
  sealed_private_key {BLOB} NOT NULL,
  created_ms BIGINT NOT NULL,
  active BIGINT UNIQUE,
  verify_until_ms BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE identities (
  name TEXT PRIMARY KEY,
  workspaces TEXT NOT NULL,
  audience TEXT NOT NULL,
  aws_role_arn TEXT NOT NULL,
  aws_plan_role_arn TEXT NOT NULL,
  aws_apply_role_arn TEXT NOT NULL,
  gcp_audience TEXT NOT NULL,
  gcp_service_account TEXT NOT NULL,
  azure_client_id TEXT NOT NULL,
  azure_tenant_id TEXT NOT NULL,
  azure_subscription_id TEXT NOT NULL,
  updated_by TEXT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE TABLE id_tokens (
  jti TEXT PRIMARY KEY,
  task_id TEXT NOT NULL,
  attempt BIGINT NOT NULL,
  key_id TEXT NOT NULL,
  audience TEXT NOT NULL,
  subject TEXT NOT NULL,
  issued_ms BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL
);
CREATE INDEX id_tokens_by_task ON id_tokens (task_id, attempt, expires_ms);
CREATE INDEX id_tokens_by_expiry ON id_tokens (expires_ms)
"#,
    ),
    (
        10,
        r#"
ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
CREATE TABLE run_tags (
  run_id TEXT NOT NULL,
  tag_key TEXT NOT NULL,
  tag_value TEXT NOT NULL,
  PRIMARY KEY (run_id, tag_key)
);
CREATE INDEX run_tags_by_tag ON run_tags (tag_key, tag_value, run_id)
"#,
    ),
    (
        11,
        r#"
CREATE TABLE idempotency_keys (
  actor TEXT NOT NULL,
  idem_key TEXT NOT NULL,
  request_sha256 TEXT NOT NULL,
  run_id TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  PRIMARY KEY (actor, idem_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms)
"#,
    ),
    (
        12,
        r#"
CREATE TABLE leader_leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  epoch BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL,
  acquired_ms BIGINT NOT NULL
)
"#,
    ),
    (
        13,
        r#"
CREATE TABLE workflow_runs (
  id TEXT PRIMARY KEY,
  file_name TEXT NOT NULL,
  definition TEXT NOT NULL,
  bundles TEXT NOT NULL,
  decls TEXT NOT NULL,
  state TEXT NOT NULL,
  destroy BIGINT NOT NULL,
  approval TEXT NOT NULL,
  pool TEXT NOT NULL,
  actor TEXT NOT NULL,
  tags TEXT NOT NULL,
  reason TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE INDEX workflow_runs_by_age ON workflow_runs (created_ms);
CREATE TABLE workflow_targets (
  workflow_run_id TEXT NOT NULL,
  target_key TEXT NOT NULL,
  position BIGINT NOT NULL,
  stack TEXT NOT NULL,
  each_key TEXT NOT NULL,
  each_value TEXT NOT NULL,
  workspace TEXT NOT NULL,
  pool TEXT NOT NULL,
  deps TEXT NOT NULL,
  tags TEXT NOT NULL,
  state TEXT NOT NULL,
  run_id TEXT NOT NULL,
  runs TEXT NOT NULL,
  reason TEXT NOT NULL,
  candidate BIGINT NOT NULL,
  cleaning BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  PRIMARY KEY (workflow_run_id, target_key)
);
CREATE INDEX workflow_targets_by_run ON workflow_targets (run_id);
CREATE TABLE workflow_rollouts (
  workflow_run_id TEXT NOT NULL,
  stack TEXT NOT NULL,
  state TEXT NOT NULL,
  wave BIGINT NOT NULL,
  forgiven BIGINT NOT NULL,
  resume_after_ms BIGINT NOT NULL,
  reason TEXT NOT NULL,
  updated_ms BIGINT NOT NULL,
  PRIMARY KEY (workflow_run_id, stack)
);
CREATE INDEX workflow_rollouts_due ON workflow_rollouts (resume_after_ms);
ALTER TABLE runs ADD COLUMN run_env TEXT NOT NULL DEFAULT ''
"#,
    ),
    (
        14,
        r#"
CREATE TABLE webhooks (
  name TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  workspaces TEXT NOT NULL,
  events TEXT NOT NULL,
  format TEXT NOT NULL,
  sealed_secret {BLOB} NOT NULL,
  enabled BIGINT NOT NULL,
  allow_private BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,
  webhook TEXT NOT NULL,
  event TEXT NOT NULL,
  run_id TEXT NOT NULL,
  workspace TEXT NOT NULL,
  body TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts BIGINT NOT NULL,
  give_up_after BIGINT NOT NULL,
  next_ms BIGINT NOT NULL,
  claimed_by TEXT NOT NULL,
  claimed_until_ms BIGINT NOT NULL,
  created_ms BIGINT NOT NULL,
  done_ms BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_ms);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook, created_ms);
CREATE TABLE webhook_attempts (
  delivery_id TEXT NOT NULL,
  attempt BIGINT NOT NULL,
  started_ms BIGINT NOT NULL,
  duration_ms BIGINT NOT NULL,
  status_code BIGINT NOT NULL,
  answer_excerpt TEXT NOT NULL,
  error TEXT NOT NULL,
  PRIMARY KEY (delivery_id, attempt)
)
"#,
    ),
    (
        15,
        r#"
ALTER TABLE runs ADD COLUMN ttl_ms BIGINT NOT NULL DEFAULT 0;
CREATE TABLE environments (
  workspace TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  ttl_ms BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL,
  set_by TEXT NOT NULL,
  source_run TEXT NOT NULL,
  workflow_run TEXT NOT NULL,
  destroy_run TEXT NOT NULL,
  attempts BIGINT NOT NULL,
  next_attempt_ms BIGINT NOT NULL,
  last_error TEXT NOT NULL,
  reminder_sent BIGINT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE INDEX environments_due ON environments (state, expires_ms)
"#,
    ),
    (
        16,
        r#"
ALTER TABLE runs ADD COLUMN drift_refresh_only BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN drift_remediate BIGINT NOT NULL DEFAULT 0;
CREATE TABLE workspace_drift (
  workspace TEXT PRIMARY KEY,
  last_check_run TEXT NOT NULL,
  last_checked_ms BIGINT NOT NULL,
  drifted_since_ms BIGINT NOT NULL,
  last_check_error TEXT NOT NULL,
  remediation_run TEXT NOT NULL
);
CREATE TABLE schedules (
  name TEXT PRIMARY KEY,
  cron TEXT NOT NULL,
  timezone TEXT NOT NULL,
  workspace TEXT NOT NULL,
  refresh_only BIGINT NOT NULL,
  remediate BIGINT NOT NULL,
  missed TEXT NOT NULL,
  next_tick_ms BIGINT NOT NULL,
  last_tick_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  workflow TEXT NOT NULL
);
CREATE TABLE workspace_ttls (
  workspace TEXT PRIMARY KEY,
  ttl_ms BIGINT NOT NULL,
  set_by TEXT NOT NULL,
  set_ms BIGINT NOT NULL
);
CREATE TABLE schedule_ticks (
  schedule TEXT NOT NULL,
  tick_ms BIGINT NOT NULL,
  outcome TEXT NOT NULL,
  settled_ms BIGINT NOT NULL,
  runs TEXT NOT NULL,
  detail TEXT NOT NULL,
  PRIMARY KEY (schedule, tick_ms)
)
"#,
    ),
    (
        17,
        r#"
CREATE TABLE plan_policies (
  name TEXT PRIMARY KEY,
  workspaces TEXT NOT NULL,
  source TEXT NOT NULL,
  digest TEXT NOT NULL,
  version BIGINT NOT NULL,
  description TEXT NOT NULL,
  updated_by TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE TABLE policy_verdicts (
  run_id TEXT NOT NULL,
  policy TEXT NOT NULL,
  version BIGINT NOT NULL,
  digest TEXT NOT NULL,
  outcome TEXT NOT NULL,
  deny TEXT NOT NULL,
  warn TEXT NOT NULL,
  error TEXT NOT NULL,
  duration_us BIGINT NOT NULL,
  evaluated_ms BIGINT NOT NULL,
  PRIMARY KEY (run_id, policy)
)
"#,
    ),
    (
        18,
        r#"
CREATE TABLE web_sessions (
  id_sha256 TEXT PRIMARY KEY,
  token_sha256 TEXT NOT NULL,
  expires_ms BIGINT NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_ms)
"#,
    ),
    (
        19,
        r#"
CREATE INDEX workflow_targets_by_state ON workflow_targets (workflow_run_id, state, position);
CREATE INDEX workflow_targets_by_stack ON workflow_targets (workflow_run_id, stack, state, position)
"#,
    ),
    (
        20,
        r#"
CREATE TABLE workflow_run_tags (
  workflow_run_id TEXT NOT NULL,
  tag_key TEXT NOT NULL,
  tag_value TEXT NOT NULL,
  PRIMARY KEY (workflow_run_id, tag_key)
);
CREATE INDEX workflow_run_tags_by_tag ON workflow_run_tags (tag_key, tag_value, workflow_run_id);
INSERT INTO workflow_run_tags (workflow_run_id, tag_key, tag_value) {WORKFLOW_RUN_TAGS};
CREATE TABLE workflow_idempotency_keys (
  actor TEXT NOT NULL,
  idem_key TEXT NOT NULL,
  request_sha256 TEXT NOT NULL,
  workflow_run_id TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  PRIMARY KEY (actor, idem_key)
);
CREATE INDEX workflow_idempotency_keys_by_age ON workflow_idempotency_keys (created_ms)
"#,
    ),
    (
        21,
        r#"
ALTER TABLE runs ADD COLUMN logs_pruned_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_by_log_age ON runs (logs_pruned_ms, updated_ms)
"#,
    ),
    (
        22,
        r#"
CREATE INDEX runs_by_age ON runs (created_ms, id)
"#,
    ),
];

/// Renders a migration for one backend.
pub fn render(sql: &str, postgres: bool) -> String {
    let (blob, autoid, tags) = if postgres {
        (
            "BYTEA",
            "BIGSERIAL PRIMARY KEY",
            "SELECT w.id, j.key, j.value FROM workflow_runs w, json_each_text(w.tags::json) j",
        )
    } else {
        (
            "BLOB",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "SELECT w.id, j.key, j.value FROM workflow_runs w, json_each(w.tags) j",
        )
    };
    sql.replace("{BLOB}", blob)
        .replace("{AUTOID}", autoid)
        .replace("{WORKFLOW_RUN_TAGS}", tags)
}
