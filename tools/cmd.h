/* cmd: the subcommands of the recd binary. Each takes the arguments after
 * its own name (argv[0] is the subcommand) and returns the process exit code:
 * 0 success, 1 failure, 2 usage error. */
#ifndef RECD_CMD_H
#define RECD_CMD_H

int cmd_gen(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
