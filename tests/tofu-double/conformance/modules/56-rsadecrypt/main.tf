# rsadecrypt with a PKCS #1 and a PKCS #8 private key (made for this test only, by openssl; the
# cipher text is "hello, world" encrypted with its public key), and its failures.
output "plain" {
  value = [
    rsadecrypt(file("${path.module}/cipher.b64"), file("${path.module}/test-only-key.pem")),
    rsadecrypt(file("${path.module}/cipher.b64"), file("${path.module}/test-only-key-pkcs8.pem")),
    can(rsadecrypt("AAAA", file("${path.module}/test-only-key.pem"))),
    can(rsadecrypt(file("${path.module}/cipher.b64"), "not a key")),
    can(rsadecrypt("not base64!", file("${path.module}/test-only-key.pem"))),
  ]
}
