/* See head_fit.h. The objective, for standardised features z_i, labels y_i, row weights s_i
 * (summing to 1; class-balanced: s_i proportional to 1 / n_{y_i}) and a prior (W0, b0) (zero
 * without one):
 *
 *   f(W, b) = sum_i s_i (logsumexp(W z_i + b) - (W z_i + b)_{y_i})
 *             + lambda / 2 (||W - W0||^2 + sum_{c with a prior} (b_c - b0_c)^2),
 *   df/dW = G^T Z + lambda (W - W0), df/db_c = sum_i G_ic [+ lambda (b_c - b0_c)],
 *   G_ic = s_i (softmax(W z_i + b)_c - [c = y_i]).
 *
 * A prior given in the features' units (W0 x + b0) is, in standardised units
 * (x = mean + scale z): W0 diag(scale) z + (b0 + W0 mean).
 *
 * f is smooth and strictly convex in W, so L-BFGS (Nocedal & Wright, algorithm 7.4, with a
 * backtracking Armijo line search) finds its one minimum. Z, the logits and G are single
 * precision (the two products over the rows are sgemm, most of the work); sums, the
 * parameters and L-BFGS are double. */
#include "head_fit.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const double fit_lambdas[FIT_NUM_LAMBDAS] = {100, 30, 10, 3, 1, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4};

#define LBFGS_MEMORY 10
#define LBFGS_MAX_ITERATIONS 1000
/* Stop when the largest |gradient| component is below GRADIENT_TOLERANCE (the loss is a mean
 * over rows, so this does not grow with them; 1e-5 gave the same predictions as 1e-4 on
 * FER2013 features, at twice the evaluations), or a step decreases f by less than
 * RELATIVE_DECREASE_TOLERANCE |f|. */
#define GRADIENT_TOLERANCE 1e-4
#define RELATIVE_DECREASE_TOLERANCE 1e-9
/* A line search that has not decreased f after this many halvings of the step is in the
 * rounding noise of f (single-precision logits): the minimum is reached. */
#define MAX_STEP_HALVINGS 10
#define CV_PATIENCE 2
/* A feature whose standard deviation is below this (relative to its mean) is constant: it is
 * centred but not scaled. */
#define MIN_RELATIVE_SCALE 1e-7

/* Per-feature mean and scale: z = (x - mean) / scale. */
typedef struct {
    double *mean, *scale;
} standardizer;

/* The minimisation problem: standardised rows, their labels and weights, the prior. */
typedef struct {
    int n, dims, classes;
    float *z;             /* n x dims */
    const int *y;         /* n */
    double *weight;       /* n, summing to 1 */
    double lambda;
    double *prior;        /* classes x (dims + 1) like theta: W0 then b0, standardised units */
    double *bias_penalty; /* classes: 1 where b_c is pulled toward b0_c, else 0 */
    float *logits;        /* n x classes scratch: logits, then G */
    float *w32, *gw32;    /* classes x dims scratch: W and G^T Z in single precision */
} problem;

bool head_alloc(softmax_head *h, int classes, int dims) {
    h->classes = classes;
    h->dims = dims;
    h->weight = calloc_array((size_t)classes * dims, sizeof(double));
    h->bias = calloc_array((size_t)classes, sizeof(double));
    if (h->weight && h->bias) return true;
    head_free(h);
    return false;
}

void head_free(softmax_head *h) {
    free(h->weight);
    free(h->bias);
    h->weight = h->bias = NULL;
}

int head_predict(const softmax_head *h, const float *x) {
    int best = 0;
    double best_logit = -INFINITY;
    for (int c = 0; c < h->classes; c++) {
        double logit = h->bias[c];
        for (int j = 0; j < h->dims; j++) logit += h->weight[(size_t)c * h->dims + j] * x[j];
        if (logit > best_logit) best_logit = logit, best = c;
    }
    return best;
}

/* ---- standardisation ---------------------------------------------------------------- */

static void standardizer_free(standardizer *s) {
    free(s->mean);
    free(s->scale);
}

/* Mean and standard deviation of the rows listed in `rows` (count of them). */
static bool standardizer_fit(const fit_data *d, const int *rows, int count, standardizer *s) {
    s->mean = calloc_array((size_t)d->dims, sizeof(double));
    s->scale = calloc_array((size_t)d->dims, sizeof(double));
    if (!s->mean || !s->scale) return false;
    for (int r = 0; r < count; r++)
        for (int j = 0; j < d->dims; j++) s->mean[j] += d->x[(size_t)rows[r] * d->dims + j];
    for (int j = 0; j < d->dims; j++) s->mean[j] /= count;
    for (int r = 0; r < count; r++)
        for (int j = 0; j < d->dims; j++) {
            double v = d->x[(size_t)rows[r] * d->dims + j] - s->mean[j];
            s->scale[j] += v * v;
        }
    for (int j = 0; j < d->dims; j++) {
        double sd = sqrt(s->scale[j] / count);
        s->scale[j] = sd > MIN_RELATIVE_SCALE * (1 + fabs(s->mean[j])) ? sd : 1;
    }
    return true;
}

/* The listed rows, standardised, as a count x dims matrix (malloc'd). */
static float *standardized_rows(const fit_data *d, const int *rows, int count, const standardizer *s) {
    float *z = alloc_array((size_t)count * d->dims, sizeof(float));
    for (int r = 0; z && r < count; r++)
        for (int j = 0; j < d->dims; j++)
            z[(size_t)r * d->dims + j] = (float)((d->x[(size_t)rows[r] * d->dims + j] - s->mean[j]) / s->scale[j]);
    return z;
}

/* The prior head in standardised units (theta's layout), and which biases it holds. */
static void standardize_prior(const fit_data *d, const standardizer *s, double *prior, double *bias_penalty) {
    const int k = d->classes, dims = d->dims;
    for (int c = 0; d->prior && c < k; c++) {
        double shift = 0;
        for (int j = 0; j < dims; j++) {
            double w = d->prior->weight[(size_t)c * dims + j];
            prior[(size_t)c * dims + j] = w * s->scale[j];
            shift += w * s->mean[j];
        }
        bool has_class = !d->prior_has_class || d->prior_has_class[c];
        prior[(size_t)k * dims + c] = has_class ? d->prior->bias[c] + shift : 0;
        bias_penalty[c] = has_class;
    }
}

/* Folds the standardisation into the head: W z + b = (W / scale) x + (b - (W / scale) . mean). */
static void fold_standardization(const double *theta, const standardizer *s, softmax_head *h) {
    const double *w = theta, *b = theta + (size_t)h->classes * h->dims;
    for (int c = 0; c < h->classes; c++) {
        double shift = 0;
        for (int j = 0; j < h->dims; j++) {
            double folded = w[(size_t)c * h->dims + j] / s->scale[j];
            h->weight[(size_t)c * h->dims + j] = folded;
            shift += folded * s->mean[j];
        }
        h->bias[c] = b[c] - shift;
    }
}

/* ---- the objective and L-BFGS ------------------------------------------------------------ */

/* Row weights summing to 1: balanced, each class present weighs the same in total; none,
 * each row the same. */
static bool row_weights(problem *p, class_weighting weighting) {
    double *count = calloc_array((size_t)p->classes, sizeof(double));
    if (!count) return false;
    int present = 0;
    for (int i = 0; i < p->n; i++) present += count[p->y[i]]++ == 0;
    for (int i = 0; i < p->n; i++)
        p->weight[i] = weighting == CLASS_WEIGHTS_NONE ? 1.0 / p->n : 1.0 / (present * count[p->y[i]]);
    free(count);
    return true;
}

/* Row i's weighted loss; turns its logits (bias not yet added) into its row of G. */
static double row_loss_and_gradient(const problem *p, int i, const double *bias, float *row) {
    const int k = p->classes, y = p->y[i];
    double top = -INFINITY, sum = 0;
    for (int c = 0; c < k; c++) top = fmax(top, row[c] + bias[c]);
    for (int c = 0; c < k; c++) sum += exp(row[c] + bias[c] - top);
    double log_sum = top + log(sum), loss = p->weight[i] * (log_sum - (row[y] + bias[y]));
    for (int c = 0; c < k; c++) row[c] = (float)(p->weight[i] * (exp(row[c] + bias[c] - log_sum) - (c == y)));
    return loss;
}

static double objective(const problem *p, const double *theta, double *grad) {
    const int n = p->n, k = p->classes, dims = p->dims;
    const size_t size_w = (size_t)k * dims;
    const double *b = theta + size_w, *b0 = p->prior + size_w;
    double *gb = grad + size_w, loss = 0, penalty = 0;
    for (size_t j = 0; j < size_w; j++) p->w32[j] = (float)theta[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, k, dims, 1.0f, p->z, dims, p->w32, dims, 0.0f, p->logits, k);
    for (int c = 0; c < k; c++) gb[c] = 0;
    for (int i = 0; i < n; i++) {
        float *row = p->logits + (size_t)i * k;
        loss += row_loss_and_gradient(p, i, b, row);
        for (int c = 0; c < k; c++) gb[c] += row[c];
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, dims, n, 1.0f, p->logits, k, p->z, dims, 0.0f, p->gw32, dims);
    for (size_t j = 0; j < size_w; j++) {
        double away = theta[j] - p->prior[j];
        penalty += away * away;
        grad[j] = p->gw32[j] + p->lambda * away;
    }
    for (int c = 0; c < k; c++) {
        double away = p->bias_penalty[c] * (b[c] - b0[c]);
        penalty += away * away;
        gb[c] += p->lambda * away;
    }
    return loss + p->lambda / 2 * penalty;
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

typedef struct {
    double *s, *y, rho[LBFGS_MEMORY]; /* LBFGS_MEMORY pairs of size dims, newest at (count-1) % memory */
    int count;
} lbfgs_history;

/* direction = -H grad, H the L-BFGS inverse Hessian estimate (the two-loop recursion). */
static void lbfgs_direction(const lbfgs_history *h, const double *grad, double *direction, size_t size) {
    double alpha[LBFGS_MEMORY];
    for (size_t i = 0; i < size; i++) direction[i] = -grad[i];
    int stored = h->count < LBFGS_MEMORY ? h->count : LBFGS_MEMORY;
    for (int k = 0; k < stored; k++) {
        int slot = (h->count - 1 - k) % LBFGS_MEMORY;
        alpha[slot] = h->rho[slot] * dot(h->s + slot * size, direction, size);
        for (size_t i = 0; i < size; i++) direction[i] -= alpha[slot] * h->y[slot * size + i];
    }
    if (stored > 0) {
        int newest = (h->count - 1) % LBFGS_MEMORY;
        double gamma = dot(h->s + newest * size, h->y + newest * size, size) /
                       dot(h->y + newest * size, h->y + newest * size, size);
        for (size_t i = 0; i < size; i++) direction[i] *= gamma;
    }
    for (int k = stored - 1; k >= 0; k--) {
        int slot = (h->count - 1 - k) % LBFGS_MEMORY;
        double beta = h->rho[slot] * dot(h->y + slot * size, direction, size);
        for (size_t i = 0; i < size; i++) direction[i] += (alpha[slot] - beta) * h->s[slot * size + i];
    }
}

/* Minimises the objective from theta (the start, and the result). */
static bool lbfgs_minimize(const problem *p, double *theta) {
    const size_t size = (size_t)p->classes * (p->dims + 1);
    lbfgs_history h = {alloc_array(LBFGS_MEMORY * size, sizeof(double)), alloc_array(LBFGS_MEMORY * size, sizeof(double)),
                       {0}, 0};
    double *grad = alloc_array(size, sizeof(double)), *next_grad = alloc_array(size, sizeof(double));
    double *direction = alloc_array(size, sizeof(double)), *next = alloc_array(size, sizeof(double));
    bool ok = h.s && h.y && grad && next_grad && direction && next;
    double f = ok ? objective(p, theta, grad) : 0;
    for (int iteration = 0; ok && iteration < LBFGS_MAX_ITERATIONS && max_abs(grad, size) > GRADIENT_TOLERANCE;
         iteration++) {
        lbfgs_direction(&h, grad, direction, size);
        double slope = dot(grad, direction, size);
        if (!(slope < 0)) { /* not a descent direction: start again from steepest descent */
            h.count = 0;
            lbfgs_direction(&h, grad, direction, size);
            slope = dot(grad, direction, size);
        }
        double step = h.count == 0 ? fmin(1.0, 1.0 / sqrt(dot(grad, grad, size))) : 1.0, next_f = f;
        for (int tries = 0; tries < MAX_STEP_HALVINGS; tries++, step /= 2) {
            for (size_t i = 0; i < size; i++) next[i] = theta[i] + step * direction[i];
            next_f = objective(p, next, next_grad);
            if (next_f <= f + 1e-4 * step * slope) break;
        }
        if (!(next_f < f)) break; /* no step decreases f: at the minimum within rounding */
        int slot = h.count % LBFGS_MEMORY;
        for (size_t i = 0; i < size; i++) {
            h.s[slot * size + i] = next[i] - theta[i];
            h.y[slot * size + i] = next_grad[i] - grad[i];
        }
        double sy = dot(h.s + slot * size, h.y + slot * size, size);
        if (sy > 1e-300) h.rho[slot] = 1 / sy, h.count++;
        bool stalled = f - next_f <= RELATIVE_DECREASE_TOLERANCE * fmax(1.0, fabs(f));
        memcpy(theta, next, size * sizeof(double));
        memcpy(grad, next_grad, size * sizeof(double));
        f = next_f;
        if (stalled) break;
    }
    free(h.s);
    free(h.y);
    free(grad);
    free(next_grad);
    free(direction);
    free(next);
    return ok;
}

/* ---- fitting ------------------------------------------------------------------------ */

static void problem_free(problem *p) {
    free(p->z);
    free(p->weight);
    free(p->prior);
    free(p->bias_penalty);
    free(p->logits);
    free(p->w32);
    free(p->gw32);
}

/* The problem over the listed rows, standardised with s; y_rows: their labels. */
static bool problem_init(problem *p, const fit_data *d, const int *rows, const int *y_rows, int count,
                         const standardizer *s) {
    const size_t size_w = (size_t)d->classes * d->dims;
    *p = (problem){.n = count,
                   .dims = d->dims,
                   .classes = d->classes,
                   .z = standardized_rows(d, rows, count, s),
                   .y = y_rows,
                   .weight = alloc_array((size_t)count, sizeof(double)),
                   .prior = calloc_array(size_w + d->classes, sizeof(double)),
                   .bias_penalty = calloc_array((size_t)d->classes, sizeof(double)),
                   .logits = alloc_array((size_t)count * d->classes, sizeof(float)),
                   .w32 = alloc_array(size_w, sizeof(float)),
                   .gw32 = alloc_array(size_w, sizeof(float))};
    if (!p->z || !p->weight || !p->prior || !p->bias_penalty || !p->logits || !p->w32 || !p->gw32) return false;
    standardize_prior(d, s, p->prior, p->bias_penalty);
    return row_weights(p, d->weighting);
}

static size_t theta_size(const problem *p) { return (size_t)p->classes * (p->dims + 1); }

static double *new_theta(const fit_data *d) { return calloc_array((size_t)d->classes * (d->dims + 1), sizeof(double)); }

/* Fits at every listed strength down to and including lambda, each starting from the last. */
static bool fit_path(problem *p, double lambda, double *theta) {
    bool ok = true;
    for (int i = 0; ok && i < FIT_NUM_LAMBDAS && fit_lambdas[i] > lambda; i++) {
        p->lambda = fit_lambdas[i];
        ok = lbfgs_minimize(p, theta);
    }
    p->lambda = lambda;
    return ok && lbfgs_minimize(p, theta);
}

bool head_fit(const fit_data *d, double lambda, softmax_head *out) {
    int *rows = alloc_array((size_t)d->rows, sizeof(int));
    double *theta = new_theta(d);
    standardizer s = {0};
    problem p = {0};
    bool ok = rows && theta;
    for (int i = 0; ok && i < d->rows; i++) rows[i] = i;
    ok = ok && standardizer_fit(d, rows, d->rows, &s) && problem_init(&p, d, rows, d->y, d->rows, &s);
    if (ok) memcpy(theta, p.prior, theta_size(&p) * sizeof(double));
    ok = ok && fit_path(&p, lambda, theta);
    if (ok) fold_standardization(theta, &s, out);
    problem_free(&p);
    standardizer_free(&s);
    free(theta);
    free(rows);
    return ok;
}

/* ---- folds and cross-validation ---------------------------------------------------------- */

typedef struct {
    int group, size;
} group_size;

static int larger_group_first(const void *a, const void *b) {
    const group_size *x = a, *y = b;
    return x->size != y->size ? y->size - x->size : x->group - y->group;
}

bool assign_folds(const int *y, const int *group_of, int rows, int classes, int groups, int folds, int *fold_of) {
    group_size *order = calloc_array((size_t)groups, sizeof *order);
    long *per_group = calloc_array((size_t)groups * classes, sizeof(long)); /* rows of each class in each group */
    long *per_fold = calloc_array((size_t)folds * classes, sizeof(long));
    int *fold_of_group = alloc_array((size_t)groups, sizeof(int));
    bool ok = order && per_group && per_fold && fold_of_group;
    for (int g = 0; ok && g < groups; g++) order[g].group = g;
    for (int i = 0; ok && i < rows; i++) {
        per_group[(size_t)group_of[i] * classes + y[i]]++;
        order[group_of[i]].size++;
    }
    if (ok) qsort(order, (size_t)groups, sizeof *order, larger_group_first);
    for (int k = 0; ok && k < groups; k++) {
        const long *add = per_group + (size_t)order[k].group * classes;
        int best = 0;
        double best_cost = INFINITY;
        for (int f = 0; f < folds; f++) { /* the fold whose class counts grow least unevenly */
            double cost = 0, total = 0;
            for (int c = 0; c < classes; c++) {
                double v = (double)(per_fold[(size_t)f * classes + c] + add[c]);
                cost += v * v;
                total += v;
            }
            cost = cost * 1e6 + total; /* ties: the fold with fewest rows */
            if (cost < best_cost) best_cost = cost, best = f;
        }
        fold_of_group[order[k].group] = best;
        for (int c = 0; c < classes; c++) per_fold[(size_t)best * classes + c] += add[c];
    }
    for (int i = 0; ok && i < rows; i++) fold_of[i] = fold_of_group[group_of[i]];
    free(order);
    free(per_group);
    free(per_fold);
    free(fold_of_group);
    return ok;
}

/* The score of the rows of `fold` (every row: fold < 0): with balanced class weights the mean
 * recall over the classes present, else the accuracy (each row counts the same, as in the fit). */
static double cv_score(const fit_data *d, const int *predicted, const int *fold_of, int fold) {
    long *support = calloc_array((size_t)d->classes, sizeof(long)), *right = calloc_array((size_t)d->classes, sizeof(long));
    long rows = 0, rows_right = 0;
    double recall_sum = 0;
    int present = 0;
    for (int i = 0; support && right && i < d->rows; i++)
        if (fold < 0 || fold_of[i] == fold) {
            support[d->y[i]]++;
            right[d->y[i]] += predicted[i] == d->y[i];
            rows++;
            rows_right += predicted[i] == d->y[i];
        }
    for (int c = 0; support && right && c < d->classes; c++)
        if (support[c]) recall_sum += (double)right[c] / support[c], present++;
    free(support);
    free(right);
    if (d->weighting == CLASS_WEIGHTS_NONE) return rows ? (double)rows_right / rows : 0;
    return present ? recall_sum / present : 0;
}

/* The standard error of the mean of the folds' own scores. */
static double fold_standard_error(const fit_data *d, const int *predicted, const int *fold_of, int folds) {
    double sum = 0, sum_squares = 0;
    for (int f = 0; f < folds; f++) {
        double score = cv_score(d, predicted, fold_of, f);
        sum += score;
        sum_squares += score * score;
    }
    double variance = (sum_squares - sum * sum / folds) / (folds - 1);
    return sqrt(fmax(variance, 0) / folds);
}

/* Fits on every fold but `fold` at strength fit_lambdas[l], from theta (that fold's fit at the
 * strength before; the prior for the first), and predicts the fold's rows into predictions[i]. */
static bool fit_fold(const fit_data *d, const int *fold_of, int fold, int l, double *theta, int *predictions) {
    int *train = alloc_array((size_t)d->rows, sizeof(int)), *train_y = alloc_array((size_t)d->rows, sizeof(int));
    softmax_head h = {0};
    standardizer s = {0};
    problem p = {0};
    int n_train = 0;
    bool ok = train && train_y && head_alloc(&h, d->classes, d->dims);
    for (int i = 0; ok && i < d->rows; i++)
        if (fold_of[i] != fold) train_y[n_train] = d->y[i], train[n_train++] = i;
    ok = ok && n_train > 0 && standardizer_fit(d, train, n_train, &s) &&
         problem_init(&p, d, train, train_y, n_train, &s);
    p.lambda = fit_lambdas[l];
    if (ok && l == 0) memcpy(theta, p.prior, theta_size(&p) * sizeof(double));
    ok = ok && lbfgs_minimize(&p, theta);
    if (ok) fold_standardization(theta, &s, &h);
    for (int i = 0; ok && i < d->rows; i++)
        if (fold_of[i] == fold) predictions[i] = head_predict(&h, d->x + (size_t)i * d->dims);
    problem_free(&p);
    standardizer_free(&s);
    head_free(&h);
    free(train);
    free(train_y);
    return ok;
}

/* The strongest strength that scores within one standard error of the best. */
static int strongest_within_one_error(const cv_summary *cv) {
    int top = 0;
    for (int l = 1; l < FIT_NUM_LAMBDAS; l++)
        if (cv->score[l] > cv->score[top]) top = l;
    int chosen = 0;
    while (cv->score[chosen] < cv->score[top] - cv->standard_error[top]) chosen++;
    return chosen;
}

/* Strengths from the strongest down, each fold warm-started from its fit at the one before;
 * stops once CV_PATIENCE strengths in a row score below the best (the small strengths, the
 * slowest to fit, rarely help features with few images). */
bool head_cross_validate(const fit_data *d, const int *fold_of, int folds, int *predicted, cv_summary *out) {
    const size_t rows = (size_t)d->rows;
    int *predictions = alloc_array(FIT_NUM_LAMBDAS * rows, sizeof(int)), top = 0;
    double *thetas = calloc_array((size_t)folds * d->classes * (d->dims + 1), sizeof(double));
    bool ok = predictions && thetas;
    for (int l = 0; l < FIT_NUM_LAMBDAS; l++) out->score[l] = out->standard_error[l] = -1;
    for (int l = 0; ok && l < FIT_NUM_LAMBDAS && l - top <= CV_PATIENCE; l++) {
        int *at_l = predictions + l * rows;
        for (int f = 0; ok && f < folds; f++)
            ok = fit_fold(d, fold_of, f, l, thetas + (size_t)f * d->classes * (d->dims + 1), at_l);
        if (!ok) break;
        out->score[l] = cv_score(d, at_l, fold_of, -1);
        out->standard_error[l] = fold_standard_error(d, at_l, fold_of, folds);
        if (out->score[l] > out->score[top]) top = l;
    }
    out->best = strongest_within_one_error(out);
    if (ok) memcpy(predicted, predictions + out->best * rows, sizeof(int) * rows);
    free(predictions);
    free(thetas);
    return ok;
}
