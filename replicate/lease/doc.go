// Package lease decides which pagefs node is the primary: the one node that
// accepts writes while the others follow it as read-only replicas.
//
// # Basics
//
// Leaser is the small interface every implementation meets (modelled on
// Litestream's): AcquireLease tries to become primary, RenewLease extends a
// held lease, ReleaseLease gives it up. A node that fails to acquire gets a
// *LeaseExistsError naming the holder's advertise URL, which is where it
// replicates from. There are two implementations:
//
//   - Static (NewStatic): the roles are fixed by configuration. A node
//     configured without a primary URL always holds the lease and never
//     loses it; a node configured with one never gets it.
//   - Etcd (NewEtcd): nodes compete for one key in etcd, created with an
//     etcd lease of the configured TTL. The holder renews it with
//     keep-alives; when it stops (crash, partition, SIGSTOP), etcd deletes
//     the key after the TTL and another node's AcquireLease succeeds.
//
// Keeper runs the acquire/renew loop for a node and reports role changes.
//
// # Caveats
//
// A Lease records when the request that obtained or renewed it was sent, so
// Lease.Deadline is never later than the moment etcd expires it (clocks on
// one machine; across machines it assumes clock rates agree). A holder must
// stop accepting writes before Deadline: Keeper demotes the node when less
// than its safety margin remains, without waiting to hear from etcd.
//
// Nothing in this package fences writes that were already accepted: the
// primary's local writes between a lost lease and the demotion are the
// margin's job.
package lease
