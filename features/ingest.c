/* placeholder until the module lands */
typedef int recd_placeholder_ingest;
