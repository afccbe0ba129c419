// Command image builds Rotor's OCI image without a Docker daemon and without
// a base image: one layer holding the static rotor binary, /data (the data
// dir, owned by the non-root user), /tmp and, optionally, a CA bundle,
// written as a tarball that is both an OCI image layout (index.json,
// oci-layout, blobs/) and a `docker save` archive (manifest.json), so that
// skopeo, crane, containerd (`ctr images import`), kind and `docker load`
// all read it.
//
// The output is reproducible: every timestamp is the creation time given
// (SOURCE_DATE_EPOCH, the commit time in the Makefile), tar entries are
// sorted and carry fixed owners and modes, and gzip writes no name or time,
// so one binary always gives one digest.
//
//	go run ./image -binary ../bin/image/rotor -out ../bin/rotor-image.tar \
//	  -version v1.2.3 -revision $(git rev-parse HEAD) -created $SOURCE_DATE_EPOCH
package main
