// Package file is the folder backend of package replicate: a backup
// destination that is a local (or network) folder, named by a
// file:///absolute/path URL.
//
// # Basics
//
// There is one type, Client, which stores one database's LTX files as
// <path>/ltx/<level>/<min>-<max>.ltx, with the level in decimal and the
// TXIDs as 16 hex digits: the layout of Litestream 0.5's file replica and of
// a pagefs data directory. ListDBs finds the databases stored under a root
// folder.
//
// # Caveats
//
// Writes are atomic and durable: each file is written to "<name>.tmp",
// synced, renamed into place, and its folder synced. A crash can leave a
// ".tmp" file behind; listings ignore it and the next write of that name
// replaces it. A file's mtime is set to the time in its LTX header, so a
// listing gives commit times without reading the files.
package file
