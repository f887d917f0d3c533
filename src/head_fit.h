/* Fitting a new softmax head on a model's features (emote adapt): L2-regularised multinomial
 * logistic regression on standardised features, shrunk toward zero or toward a prior head (the
 * base model's own, for the labels it shares), class-weighted so that every class counts the
 * same (or not), minimised with L-BFGS; its strength chosen by k-fold cross-validation. The
 * standardisation is folded into the head's weights and bias, so the head takes the features
 * as they are. L-BFGS runs in double precision; the products over the rows (BLAS) in single. */
#ifndef EMOTE_HEAD_FIT_H
#define EMOTE_HEAD_FIT_H

#include <stdbool.h>

/* logits = weight (classes x dims) . x + bias, for x in the features' own units. */
typedef struct {
    int classes, dims;
    double *weight, *bias;
} softmax_head;

typedef enum {
    CLASS_WEIGHTS_BALANCED, /* each class present weighs the same in total */
    CLASS_WEIGHTS_NONE,     /* each row weighs the same: the folders' proportions are the priors */
} class_weighting;

typedef struct {
    int rows, dims, classes;
    const float *x; /* rows x dims */
    const int *y;   /* rows labels in [0, classes) */
    class_weighting weighting;
    /* Optional: the head the penalty pulls toward instead of zero, classes x dims in the
     * features' units. prior_has_class[c]: its row c is a real prior for class c (weights and
     * bias pulled toward it); otherwise that row must be zero and the bias is left free. */
    const softmax_head *prior;
    const bool *prior_has_class;
} fit_data;

bool head_alloc(softmax_head *h, int classes, int dims);
void head_free(softmax_head *h);
/* The head's top class for one row of features. */
int head_predict(const softmax_head *h, const float *x);

/* Fits on every row at regularisation strength lambda (on standardised features, loss
 * averaged over the weighted rows, penalty lambda / 2 ||theta - prior||^2 in standardised
 * units), starting at the prior and going down fit_lambdas to lambda. false when out of memory. */
bool head_fit(const fit_data *d, double lambda, softmax_head *out);

/* Splits rows into `folds` folds with whole groups (group_of[i] in [0, groups)) on one side:
 * groups by size, largest first, each to the fold where it leaves the per-class counts most
 * even. Each row its own group gives stratified folds. false when out of memory. */
bool assign_folds(const int *y, const int *group_of, int rows, int classes, int groups, int folds, int *fold_of);

/* The regularisation strengths tried, strongest first. */
#define FIT_NUM_LAMBDAS 13
extern const double fit_lambdas[FIT_NUM_LAMBDAS];

typedef struct {
    int best;                               /* the chosen strength: index in fit_lambdas */
    double score[FIT_NUM_LAMBDAS];          /* cross-validated score at each strength; -1: not tried */
    double standard_error[FIT_NUM_LAMBDAS]; /* of the folds' own scores; -1: not tried */
} cv_summary;

/* k-fold cross-validation along fit_lambdas: for each fold, a head fitted on the other folds
 * (standardised with their own statistics) predicts its rows. Goes down the list until two
 * strengths in a row score below the best (the score: mean per-class recall with balanced
 * class weights, accuracy with none), and chooses the strongest
 * strength that scores within one standard error of the best (the "one standard error rule":
 * among fits the folds cannot tell apart, the one closest to the prior, or to zero);
 * predicted[i]: row i's out-of-fold prediction at the chosen strength. false when out of
 * memory; folds >= 2. */
bool head_cross_validate(const fit_data *d, const int *fold_of, int folds, int *predicted, cv_summary *out);

#endif
