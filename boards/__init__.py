"""Board tops, the open FPGA toolchain set-up, the synthesis flow and the host driver."""
