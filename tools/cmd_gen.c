typedef int recd_placeholder_cmd_gen;
