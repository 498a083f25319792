"""Dev and test tooling: the local AWS stack, the test control plane, service processes. Never shipped."""
