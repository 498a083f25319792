"""Dev and test tooling, never shipped: the whole local stack, by subject.

- `aws/`: the local AWS stack (moto in its own process, the Parameter Store change emitter, provisioning
  of the queue, rule and Cloud Map service, the control API for counts and faults, `hack/local-aws`);
- `controlplane/`: kube-apiserver + etcd built from Go modules, their PKI and processes; promtool;
- `services/`: fleets of real config-service processes; fake refresh endpoints by the thousand at
  distinct loopback addresses (the benchmarks); chart-rendered pods run under podman;
- `network/`: the TCP fault proxy (black holes, resets);
- `stack/`: the one stack builder (`builder.Stack`; `parts`: control plane + local AWS started together,
  `deploy`: instances registered, routes applied, operator started; `pods`, `detached`, `kube`) and the
  one operator launcher (`operator`), used by `make demo`, the benchmarks and every test tier;
- `fixtures/`: the pytest plugins that hand the parts above to tests (loaded by tests/conftest.py).
"""
