"""What the runs table says (torch-free): run selections, the phase rule, the fitted boundary."""
