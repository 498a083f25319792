"""The test control plane: kube-apiserver + etcd built from Go modules, its PKI and processes; promtool."""
