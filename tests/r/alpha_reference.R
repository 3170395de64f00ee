# Reference values for tests/test_reliability.py: Cronbach's alpha and its confidence interval from R psych::alpha,
# computed on small data sets made here (set.seed), so that cpeval.reliability is checked against independent code.
#
# Run from the repository root (once; the outputs are committed, R is not needed on CI):
#     Rscript tests/r/alpha_reference.R
# Writes tests/data/alpha/{likert,binary,scope}.csv (the data) and tests/data/alpha/psych_reference.csv (the values).
# Made with R 4.2.2 and psych 2.2.9 (Debian r-cran-psych); the reference file records the versions it was made with.
#
# What is recorded, per data set and scale:
#   raw_alpha                psych::alpha(x)$total$raw_alpha
#   feldt_lower/upper        psych::alpha(x)$feldt$lower.ci / $upper.ci (Feldt et al. 1987, F distribution), the first
#                            of the two "95% confidence boundaries" rows psych 2.x prints
#   duhachek_lower/upper     raw_alpha -/+ 1.96 * $total$ase, the second printed row (Duhachek & Iacobucci 2004),
#                            kept only to show the tests compare with the right one (cpeval gives Feldt)
#   n, n_items               rows and columns psych was given
# psych's Feldt interval uses n = nrow(x) even with use = "complete.obs" (rows with gaps still counted), so incomplete
# rows are removed here first (na.omit): that is listwise deletion, which cpeval applies too.

suppressPackageStartupMessages(library(psych))

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else file.path("tests", "data", "alpha")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

set.seed(20240611)

clip_round <- function(x, lo, hi) pmin(pmax(round(x), lo), hi)
punch_na <- function(frame, n_missing) {
  # n_missing cells set to NA at random positions
  m <- as.matrix(frame)
  cells <- sample(length(m), n_missing)
  m[cells] <- NA
  as.data.frame(m)
}

# 1. likert: 60 people x 6 items on 1-5 (one factor), 9 cells missing -> listwise deletion
latent <- rnorm(60)
likert <- as.data.frame(sapply(1:6, function(j) clip_round(3 + 0.8 * latent + rnorm(60, sd = 0.9), 1, 5)))
names(likert) <- paste0("item", 1:6)
likert <- punch_na(likert, 9)

# 2. binary: 12 people x 5 yes/no items (a small sample, KR-20 case), complete
latent <- rnorm(12)
binary <- as.data.frame(sapply(1:5, function(j) as.integer(latent + rnorm(12, sd = 0.8) > 0)))
names(binary) <- paste0("item", 1:5)

# 3. scope: 50 people x 16 SCOPE ratings named as cpeval's scope instrument expects. Satisfaction is rated
#    1 = delighted ... 7 = terrible (so it falls as the latent rises), opportunities 1-5 (rises with it); 12 cells
#    missing. cpeval reverse-scores satisfaction (8 - x) and, for the overall score, rescales every rating to 0-100
#    (POMP: (x - lowest) / (highest - lowest) * 100); both are done here by hand.
domains <- c("leisure", "housing", "safety", "work", "finances", "education", "family", "health")
latent <- rnorm(50)
sat <- sapply(domains, function(d) clip_round(4 - 1.1 * latent + rnorm(50, sd = 1.1), 1, 7))
opp <- sapply(domains, function(d) clip_round(3 + 0.7 * latent + rnorm(50, sd = 0.9), 1, 5))
colnames(sat) <- paste0("scope_sat_", domains)
colnames(opp) <- paste0("scope_opp_", domains)
scope <- punch_na(as.data.frame(cbind(sat, opp)), 12)

write.csv(likert, file.path(out_dir, "likert.csv"), row.names = FALSE, na = "")
write.csv(binary, file.path(out_dir, "binary.csv"), row.names = FALSE, na = "")
write.csv(scope, file.path(out_dir, "scope.csv"), row.names = FALSE, na = "")

reference <- function(dataset, scale, x) {
  x <- na.omit(x)
  a <- psych::alpha(x, check.keys = FALSE, warnings = FALSE)
  data.frame(
    dataset = dataset, scale = scale, n = nrow(x), n_items = ncol(x),
    raw_alpha = a$total$raw_alpha,
    feldt_lower = a$feldt$lower.ci$raw_alpha, feldt_upper = a$feldt$upper.ci$raw_alpha,
    duhachek_lower = a$total$raw_alpha - 1.96 * a$total$ase, duhachek_upper = a$total$raw_alpha + 1.96 * a$total$ase,
    r_version = paste(R.version$major, R.version$minor, sep = "."),
    psych_version = as.character(packageVersion("psych")),
    stringsAsFactors = FALSE
  )
}

sat_cols <- paste0("scope_sat_", domains)
opp_cols <- paste0("scope_opp_", domains)
sat_reversed <- 8 - scope[sat_cols]
pomp <- cbind((sat_reversed - 1) / 6 * 100, (scope[opp_cols] - 1) / 4 * 100)

ref <- rbind(
  reference("likert", "all", likert),
  reference("binary", "all", binary),
  reference("scope", "scope_satisfaction", sat_reversed),
  reference("scope", "scope_opportunities", scope[opp_cols]),
  reference("scope", "scope_overall", pomp),
  # the overall score without reverse-scoring: what a forgotten `reverse: true` would give
  reference("scope", "scope_overall_not_reversed",
            cbind((scope[sat_cols] - 1) / 6 * 100, (scope[opp_cols] - 1) / 4 * 100))
)
write.csv(ref, file.path(out_dir, "psych_reference.csv"), row.names = FALSE)
print(ref[, c("dataset", "scale", "n", "n_items", "raw_alpha", "feldt_lower", "feldt_upper")])
cat("wrote", out_dir, "\n")
