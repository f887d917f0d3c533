/* Fitting a new softmax head on a model's features (emote adapt): L2-regularised multinomial
 * logistic regression on standardised features, class-weighted so that every class counts the
 * same, minimised with L-BFGS; its strength chosen by k-fold cross-validation. The
 * standardisation is folded into the head's weights and bias, so the head takes the features
 * as they are. Double precision throughout; BLAS for the products. */
#ifndef EMOTE_HEAD_FIT_H
#define EMOTE_HEAD_FIT_H

#include <stdbool.h>

typedef struct {
    int rows, dims, classes;
    const float *x; /* rows x dims */
    const int *y;   /* rows labels in [0, classes) */
} fit_data;

/* logits = weight (classes x dims) . x + bias, for x in the features' own units. */
typedef struct {
    int classes, dims;
    double *weight, *bias;
} softmax_head;

bool head_alloc(softmax_head *h, int classes, int dims);
void head_free(softmax_head *h);
/* The head's top class for one row of features. */
int head_predict(const softmax_head *h, const float *x);

/* Fits on every row at regularisation strength lambda (on standardised features, loss
 * averaged over the class-weighted rows). false when out of memory. */
bool head_fit(const fit_data *d, double lambda, softmax_head *out);

/* Splits rows into `folds` folds with whole groups (group_of[i] in [0, groups)) on one side:
 * groups by size, largest first, each to the fold where it leaves the per-class counts most
 * even. Each row its own group gives stratified folds. false when out of memory. */
bool assign_folds(const int *y, const int *group_of, int rows, int classes, int groups, int folds, int *fold_of);

/* The regularisation strengths tried, strongest first. */
#define FIT_NUM_LAMBDAS 11
extern const double fit_lambdas[FIT_NUM_LAMBDAS];

typedef struct {
    int best;                      /* index in fit_lambdas */
    double score[FIT_NUM_LAMBDAS]; /* cross-validated mean recall at each strength; -1: not tried */
} cv_summary;

/* k-fold cross-validation along fit_lambdas: for each fold, a head fitted on the other folds
 * (standardised with their own statistics) predicts its rows. Picks the strength with the best
 * mean per-class recall (the strongest among ties), going down the list until two strengths
 * in a row score below the best; predicted[i]: row i's out-of-fold prediction at the chosen
 * strength. false when out of memory. */
bool head_cross_validate(const fit_data *d, const int *fold_of, int folds, int *predicted, cv_summary *out);

#endif
