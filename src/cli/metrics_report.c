/* The classification report that eval prints and adapt prints for its cross-validation:
 * counts, accuracy, per-class precision/recall/F1 and the confusion matrix, as text or JSON. */
#include <stdio.h>

#include "metrics.h"

void metrics_print_text(FILE *f, const confusion_matrix *c, const metrics_summary *m, const char *const *labels,
                        long failed) {
    int k = c->classes;
    fprintf(f, "images      %ld evaluated, %ld failed\n", c->total, failed);
    fprintf(f, "accuracy    %.4f\nmean recall %.4f\nmacro-F1    %.4f\n\n", m->accuracy, m->mean_recall, m->macro_f1);
    fprintf(f, "%-12s %9s %9s %9s %8s\n", "label", "precision", "recall", "f1", "support");
    for (int i = 0; i < k; i++)
        fprintf(f, "%-12s %9.4f %9.4f %9.4f %8ld\n", labels[i], m->per_class[i].precision, m->per_class[i].recall,
                m->per_class[i].f1, m->per_class[i].support);
    fprintf(f, "\nconfusion matrix (rows: true label, columns: predicted)\n%-12s", "");
    for (int j = 0; j < k; j++) fprintf(f, " %8.8s", labels[j]);
    fputc('\n', f);
    for (int i = 0; i < k; i++) {
        fprintf(f, "%-12s", labels[i]);
        for (int j = 0; j < k; j++) fprintf(f, " %8ld", confusion_at(c, i, j));
        fputc('\n', f);
    }
}

/* Labels need no escaping: the model loader refuses quotes, backslashes and control characters. */
void metrics_print_json_fields(FILE *f, const confusion_matrix *c, const metrics_summary *m, const char *const *labels,
                               long failed) {
    int k = c->classes;
    fprintf(f, "\"images\":%ld,\"failed\":%ld,\"accuracy\":%.17g,\"mean_recall\":%.17g,\"macro_f1\":%.17g,\"labels\":[",
            c->total, failed, m->accuracy, m->mean_recall, m->macro_f1);
    for (int i = 0; i < k; i++) fprintf(f, "%s\"%s\"", i ? "," : "", labels[i]);
    fprintf(f, "],\"per_class\":{");
    for (int i = 0; i < k; i++)
        fprintf(f, "%s\"%s\":{\"precision\":%.17g,\"recall\":%.17g,\"f1\":%.17g,\"support\":%ld}", i ? "," : "",
                labels[i], m->per_class[i].precision, m->per_class[i].recall, m->per_class[i].f1,
                m->per_class[i].support);
    fprintf(f, "},\"confusion\":[");
    for (int i = 0; i < k; i++) {
        fprintf(f, "%s[", i ? "," : "");
        for (int j = 0; j < k; j++) fprintf(f, "%s%ld", j ? "," : "", confusion_at(c, i, j));
        fputc(']', f);
    }
    fputc(']', f);
}
