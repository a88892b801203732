// Package imagecrypt checks the tenant's image encryption end to end: `skopeo copy
// --encryption-key provider:verdictd:<repository>/<type>/<tag>` against the real bin/verdictd
// serving ocicrypt's key provider protocol, the encrypted image as ocicrypt writes it, and its
// decryption. BusyboxArchive makes the test image (tests/security uses it too). The copier is a
// skopeo with key providers ($INCLAVARE_SKOPEO) or, by default, imgcopy (a module of its own
// below this directory; see harness.ImageCopier for why). These tests never skip: a missing
// copier, busybox-static or verdictd fails them.
package imagecrypt
