// Package replicate ships LTX files out of a pagefs mount: to backup
// destinations (a folder or an S3 bucket), and back in again by restore.
//
// # Basics
//
// Client is the one small interface every backend implements (list the
// files of a level, open one, write one, delete some); the backends are the
// subpackages file and s3. Destination is one backup URL, parsed by ParseURL
// and shared by both tools: file:///abs/dir or s3://bucket/prefix with the
// query parameters Litestream 0.5 also reads (endpoint, region,
// forcePathStyle, skipVerify). A destination holds each database under its
// name, in Litestream 0.5's layout:
//
//	file://:  <root>/<db>/ltx/<level>/<min>-<max>.ltx   (level in decimal)
//	s3://:    <prefix>/<db>/<level %04x>/<min>-<max>.ltx
//
// Level 0 holds one file per captured transaction (or several consecutive
// ones merged under load), levels 1 to 8 hold compactions and level 9
// (SnapshotLevel) holds snapshots.
//
// # Caveats
//
// A Client is per database; Destination.Client makes one. Credentials never
// appear in URLs (ParseURL refuses them) nor in errors.
package replicate
