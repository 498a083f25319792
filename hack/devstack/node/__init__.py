"""The real one-node cluster (`make cluster-up`): kubelet, containerd, scheduler and controller-manager."""
