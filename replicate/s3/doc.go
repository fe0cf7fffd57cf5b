// Package s3 is the S3 backend of package replicate: a backup destination
// in an S3 bucket (AWS or a compatible store such as MinIO), named by an
// s3://bucket/prefix URL.
//
// # Basics
//
// There is one type, Client, which stores one database's LTX files under
// <prefix>/<level %04x>/<min>-<max>.ltx, the key layout of Litestream 0.5's
// S3 replica, with the header's timestamp in the object metadata
// "litestream-timestamp" as Litestream writes it. WithPath makes Clients for
// other databases that share one connection pool; ListDBs finds the
// databases under a prefix.
//
// Credentials come from the standard AWS chain of aws-sdk-go-v2/config
// (environment, shared config and credentials files, instance and task
// roles) and appear in no error or log. AWS_CA_BUNDLE is honoured: the HTTP
// client is one the SDK can add the bundle's roots to.
//
// # Caveats
//
// Every request is bounded: listing and deleting by RequestTimeout, file
// transfers by IdleTimeout, which cancels a transfer that makes no progress
// (a deadline that moves while bytes flow, so a large snapshot on a slow link
// is not cut off). Failed requests are retried with backoff (MaxAttempts),
// including 408, 429 and 5xx answers, without the SDK's retry quota, which
// would otherwise make every request fail fast after an outage.
//
// Each file is one PutObject: S3 accepts up to 5 GiB that way, far more than
// an LTX file of a SQLite database normally holds. A body that cannot seek
// is first copied to a temporary file so that retries can resend it.
package s3
