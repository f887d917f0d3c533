/* Classification metrics from a confusion matrix. */
#ifndef EMOTE_METRICS_H
#define EMOTE_METRICS_H

#include <stdbool.h>
#include <stdio.h>

typedef struct {
    int classes;
    long *counts; /* [true][predicted] */
    long total;
} confusion_matrix;

typedef struct {
    double precision, recall, f1;
    long support;   /* images whose true label is this class */
    long predicted; /* images predicted as this class */
} class_metrics;

typedef struct {
    double accuracy;
    double mean_recall; /* mean per-class recall over classes with support */
    double macro_f1;    /* mean F1 over classes that occur as truth or prediction */
    class_metrics *per_class;
} metrics_summary;

bool confusion_init(confusion_matrix *m, int classes);
void confusion_add(confusion_matrix *m, int truth, int predicted);
void confusion_free(confusion_matrix *m);
long confusion_at(const confusion_matrix *m, int truth, int predicted);

/* Fills s (per_class allocated, classes entries); false on allocation failure. */
bool metrics_compute(const confusion_matrix *m, metrics_summary *s);
void metrics_free(metrics_summary *s);

/* The report (metrics_report.c): as text, or as the fields of a JSON object ("images",
 * "failed", "accuracy", "mean_recall", "macro_f1", "labels", "per_class", "confusion"). */
void metrics_print_text(FILE *f, const confusion_matrix *c, const metrics_summary *m, const char *const *labels,
                        long failed);
void metrics_print_json_fields(FILE *f, const confusion_matrix *c, const metrics_summary *m, const char *const *labels,
                               long failed);

#endif
