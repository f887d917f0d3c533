#include "metrics.h"

#include <stdlib.h>

#include "util.h"

bool confusion_init(confusion_matrix *m, int classes) {
    m->classes = classes;
    m->total = 0;
    m->counts = calloc_array((size_t)classes * (size_t)classes, sizeof(long));
    return m->counts != NULL;
}

void confusion_add(confusion_matrix *m, int truth, int predicted) {
    m->counts[(size_t)truth * m->classes + predicted]++;
    m->total++;
}

long confusion_at(const confusion_matrix *m, int truth, int predicted) {
    return m->counts[(size_t)truth * m->classes + predicted];
}

void confusion_free(confusion_matrix *m) {
    free(m->counts);
    m->counts = NULL;
}

bool metrics_compute(const confusion_matrix *m, metrics_summary *s) {
    int k = m->classes;
    s->per_class = calloc_array((size_t)k, sizeof(class_metrics));
    if (!s->per_class) return false;
    long correct = 0;
    int with_support = 0, occurring = 0;
    double recall_sum = 0, f1_sum = 0;
    for (int c = 0; c < k; c++) {
        class_metrics *cm = &s->per_class[c];
        for (int o = 0; o < k; o++) {
            cm->support += confusion_at(m, c, o);
            cm->predicted += confusion_at(m, o, c);
        }
        long hits = confusion_at(m, c, c);
        correct += hits;
        cm->precision = cm->predicted ? (double)hits / cm->predicted : 0;
        cm->recall = cm->support ? (double)hits / cm->support : 0;
        cm->f1 = cm->precision + cm->recall > 0 ? 2 * cm->precision * cm->recall / (cm->precision + cm->recall) : 0;
        if (cm->support) {
            with_support++;
            recall_sum += cm->recall;
        }
        if (cm->support || cm->predicted) {
            occurring++;
            f1_sum += cm->f1;
        }
    }
    s->accuracy = m->total ? (double)correct / m->total : 0;
    s->mean_recall = with_support ? recall_sum / with_support : 0;
    s->macro_f1 = occurring ? f1_sum / occurring : 0;
    return true;
}

void metrics_free(metrics_summary *s) {
    free(s->per_class);
    s->per_class = NULL;
}
