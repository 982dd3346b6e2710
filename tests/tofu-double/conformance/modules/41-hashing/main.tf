# Hashing functions over strings and files, and name-based UUIDs.
output "strings" {
  value = [sha1("hello"), sha256("hello"), sha512("hello"), base64sha256("hello"), base64sha512("héllo"), md5("")]
}

output "files" {
  value = [filemd5("${path.module}/data.txt"), filesha1("${path.module}/data.txt"), filesha256("${path.module}/data.txt"), filesha512("${path.module}/data.txt"), filebase64("${path.module}/data.txt"), filebase64sha256("${path.module}/data.txt"), filebase64sha512("${path.module}/data.txt")]
}

output "uuids" {
  value = [uuidv5("dns", "example.com"), uuidv5("url", "https://example.com/x"), uuidv5("oid", "1.2.3"), uuidv5("x500", "cn=x"), uuidv5("6ba7b812-9dad-11d1-80b4-00c04fd430c8", "x")]
}

resource "terraform_data" "digest" {
  input = sha256(jsonencode({ a = 1 }))
}
