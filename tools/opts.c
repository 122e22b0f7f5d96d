typedef int recd_placeholder_opts;
