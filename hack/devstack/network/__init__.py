"""Network faults below the answer: a TCP proxy that black-holes or resets connections on demand."""
