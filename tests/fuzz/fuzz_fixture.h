/* fuzz_fixture: what the fuzz targets share - a scratch folder that is
 * removed at exit, and a tiny but complete model (categories, churn scores,
 * a repurchase model)
 * published with model_publish, so that every part of the format and every
 * RPC has something real to read. */
#ifndef RECD_FUZZ_FIXTURE_H
#define RECD_FUZZ_FIXTURE_H

#include <limits.h>
#include <stddef.h>

#include "model.h"

#define FUZZ_USERS 16
#define FUZZ_ITEMS 24
#define FUZZ_FACTORS 4
#define FUZZ_CATEGORIES 3

/* Creates a fresh folder (on /dev/shm when it exists: the event store
 * fsyncs on every append, and tmpfs makes that free) into dir, PATH_MAX
 * bytes, and removes it with everything in it when the process exits
 * normally. Aborts on failure: a fuzz target cannot run without it. */
void fuzz_scratch_dir(const char *name, char dir[PATH_MAX]);

/* Publishes the tiny model into model_dir (created if missing); fills
 * *meta with what was published. Users are "u0".."u15" (u1 has no churn
 * score), items "i0".."i23" (i0 has no category), categories "toys",
 * "tools", "food". Aborts on failure. */
void fuzz_publish_model(const char *model_dir, model_meta *meta);

#endif
