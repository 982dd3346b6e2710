# uuid() and timestamp() are unknown while planning and new values at each apply (the second
# plan changes them again); only their shapes are compared.
resource "terraform_data" "stamp" {
  input = {
    id   = uuid()
    year = length(formatdate("YYYY", timestamp()))
  }
}

output "id_length" {
  value = length(uuid())
}

output "stamp_is_rfc3339" {
  value = can(formatdate("YYYY", timestamp())) && length(timestamp()) == 20
}

# plantimestamp() is known while planning and the same when the saved plan is applied.
resource "terraform_data" "planned_at" {
  input = length(plantimestamp())
}

output "plan_time_is_rfc3339" {
  value = can(formatdate("YYYY", plantimestamp())) && length(plantimestamp()) == 20
}
