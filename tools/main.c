typedef int recd_placeholder_main;
