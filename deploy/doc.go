// Package deploy holds what runs Inclavare Containers on Kubernetes (README.md): the
// RuntimeClass rune, containerd's runtime handler configuration (containerd/), the node
// installer rune-deploy (installer/install.sh, rune-deploy.yaml), the device plugin DaemonSet
// (device-plugin.yaml), the images (image/Dockerfile) and an example pod (examples/).
//
// It has no Go code to import: its tests decode every manifest strictly with the Kubernetes
// API types, parse the containerd configuration strictly, check that the pieces name each
// other consistently (handler, resources, paths, flags, images), and run the installer against
// a node file tree with the real containerd checking the configuration it writes. The manifests
// must never grant more than the pods need: no API access, privilege only for the installer.
package deploy
