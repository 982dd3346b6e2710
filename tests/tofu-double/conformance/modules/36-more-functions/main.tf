# More functions: strings, collections, numbers, encodings, paths, files (list results compared
# as JSON where the stand-in does not yet type them).
output "strings" {
  value = [trim("xxhixx", "x"), trimprefix("tf-pool", "tf-"), trimsuffix("pool.tf", ".tf"), title("hello wide world"), chomp("line\n\n"), strrev("abc"), indent(2, "a\nb"), urlencode("a b&c=d/é")]
}

output "collections" {
  value = jsonencode([reverse([1, 2, 3]), slice(["a", "b", "c", "d"], 1, 3), sort(["b", "c", "a"]), compact(["a", "", "b"]), chunklist([1, 2, 3, 4, 5], 2), coalescelist([], ["x"])])
}

output "maps_and_sets" {
  value = jsonencode([zipmap(["a", "b"], [1, 2]), setunion(["b", "a"], ["c", "a"]), setintersection(["a", "b", "c"], ["b", "c", "d"]), setsubtract(["a", "b", "c"], ["b"])])
}

output "numbers" {
  value = [index(["a", "b", "c"], "b"), one(["only"]), sum([1, 2, 3.5]), pow(2, 10), signum(-3), parseint("ff", 16), parseint("-101", 2), alltrue([true, true]), anytrue([false, true])]
}

output "paths" {
  value = [basename("/a/b/c.txt"), dirname("/a/b/c.txt"), md5("hello"), fileexists("${path.module}/main.tf"), length(file("${path.module}/main.tf")) > 0]
}

output "formatlist" {
  value = jsonencode(formatlist("%s=%d", ["a", "b"], [1, 2]))
}
