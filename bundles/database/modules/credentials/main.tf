# Credentials for the database: a password generated once (uuid() at creation, then kept by
# ignore_changes), with no provider to download.
variable "username" {
  type = string
}

variable "database" {
  type = string
}

variable "instance" {
  type        = string
  description = "The instance's OSID (recorded with the credentials)."
}

resource "terraform_data" "password" {
  input = "${replace(uuid(), "-", "")}${substr(sha256(var.instance), 0, 8)}"

  lifecycle {
    ignore_changes = [input]
  }
}

resource "terraform_data" "account" {
  input = {
    username = var.username
    database = var.database
  }
}

output "username" {
  value = terraform_data.account.output.username
}

output "database" {
  value = terraform_data.account.output.database
}

output "password" {
  value     = terraform_data.password.output
  sensitive = true
}
