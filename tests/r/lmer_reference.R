# Writes tests/data/lmer/reference.json: lme4 + lmerTest fits (REML, Satterthwaite df) of every model in
# tests/data/lmer/models.json, the reference values for tests/test_mixed.py (which never calls R).
#
# Run from the repository root after `python tests/make_lmer_data.py` (the JSON is committed):
#     Rscript tests/r/lmer_reference.R
# Needs lme4, lmerTest, nlme and jsonlite (Debian: r-cran-lme4 r-cran-lmertest r-cran-jsonlite; nlme ships with R).
# The versions used are written into the JSON ("meta").
#
# Per model it records: fixed effects (estimate, SE, Satterthwaite df, t, p) from summary(<lmerModLmerTest>);
# vcov(fit); variance components (VarCorr); REMLcrit(fit); isSingular(fit); theta; lmerTest's vcov_varpar (in its
# (theta, sigma) parametrisation); lmerTest::contest1D for the model's contrast; warnings and messages; nlme::lme
# denominator df (nlme's between-within style rule, a check on cpeval's fallback); and a profile-likelihood CI for
# the team ICC computed from lme4's own deviance function (devFunOnly = TRUE): the ICC depends only on theta, so
# for each ICC value the REML criterion is minimised over the other theta (nested models) and the interval is
# where it is within qchisq(0.95, 1) of the minimum.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(nlme)
  library(jsonlite)
})

dir <- file.path("tests", "data", "lmer")
spec <- fromJSON(file.path(dir, "models.json"), simplifyVector = FALSE)
factors <- lapply(spec$factors, unlist)

icc_profile <- function(formula, data, fit, level = 0.95) {
  devfun <- lmer(formula, data = data, REML = TRUE, devFunOnly = TRUE)
  th_names <- names(getME(fit, "theta"))
  it <- grep("^team\\.", th_names)
  io <- setdiff(seq_along(th_names), it)
  dmin <- REMLcrit(fit)
  crit <- qchisq(level, 1)
  th_hat <- getME(fit, "theta")
  prof <- function(rho) {
    f <- function(to) {
      th <- numeric(length(th_names))
      if (length(io)) th[io] <- to
      th[it] <- sqrt(rho * (1 + sum(to^2)) / (1 - rho))
      devfun(th)
    }
    if (!length(io)) return(f(numeric(0)) - dmin)
    o <- optimize(f, c(0, 10), tol = 1e-10)
    min(o$objective, f(0)) - dmin
  }
  rho_hat <- th_hat[it]^2 / (1 + sum(th_hat^2))
  g <- function(rho) prof(rho) - crit
  lo <- if (rho_hat <= 0 || g(0) <= 0) 0 else uniroot(g, c(0, rho_hat), tol = 1e-12)$root
  b <- rho_hat; a <- rho_hat
  repeat {
    b <- if (rho_hat > 0) 1 - (1 - b) / 2 else max(2 * b, 1e-4)
    if (g(b) > 0) break
    a <- b
  }
  hi <- uniroot(g, c(a, b), tol = 1e-12)$root
  list(icc = unname(rho_hat), conf_low = lo, conf_high = hi, level = level)
}

results <- list()
for (name in names(spec$models)) {
  m <- spec$models[[name]]
  d <- read.csv(file.path(dir, paste0(m$data, ".csv")))
  for (f in names(factors)) if (f %in% names(d)) d[[f]] <- factor(d[[f]], levels = factors[[f]])
  terms <- unlist(m$terms)
  groups <- unlist(m$groups)
  rhs_fixed <- paste(terms, collapse = " + ")
  rhs_random <- paste0("(1 | ", groups, ")", collapse = " + ")
  formula <- as.formula(paste("y ~", rhs_fixed, "+", rhs_random))
  warns <- character(0); msgs <- character(0)
  fit <- withCallingHandlers(
    lmerTest::lmer(formula, data = d, REML = TRUE),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(mm) { msgs <<- c(msgs, conditionMessage(mm)); invokeRestart("muffleMessage") })
  sm <- withCallingHandlers(summary(fit),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  co <- sm$coefficients
  fixed <- lapply(seq_len(nrow(co)), function(i) list(
    estimate = co[i, "Estimate"], std_error = co[i, "Std. Error"], df = co[i, "df"],
    t_value = co[i, "t value"], p_value = co[i, "Pr(>|t|)"]))
  names(fixed) <- rownames(co)
  vc <- as.data.frame(VarCorr(fit))
  variances <- setNames(as.list(vc$vcov), ifelse(vc$grp == "Residual", "residual", vc$grp))
  L <- setNames(numeric(nrow(co)), rownames(co))
  for (k in names(m$contrast)) L[k] <- m$contrast[[k]]
  ct <- contest1D(fit, L)
  # nlme between-within style df
  rnd <- if (length(groups) == 1) as.formula(paste("~ 1 |", groups[1])) else
    as.formula(paste("~ 1 |", groups[1], "/", groups[2]))
  lfit <- nlme::lme(as.formula(paste("y ~", rhs_fixed)), random = rnd, data = d, method = "REML")
  ttab <- summary(lfit)$tTable
  results[[name]] <- list(
    formula = paste(deparse(formula), collapse = ""),
    n_obs = nobs(fit),
    n_groups = as.list(ngrps(fit)),
    fixed = fixed,
    vcov_names = rownames(co),
    vcov = unname(as.matrix(vcov(fit))),
    variances = variances,
    theta = as.list(getME(fit, "theta")),
    reml_criterion = REMLcrit(fit),
    singular = isSingular(fit),
    vcov_varpar = unname(fit@vcov_varpar),
    contrast = list(L = as.list(L), estimate = ct$Estimate, std_error = ct[["Std. Error"]], df = ct$df,
                    t_value = ct[["t value"]], p_value = ct[["Pr(>|t|)"]]),
    warnings = as.list(warns), messages = as.list(msgs),
    nlme_df = as.list(setNames(ttab[, "DF"], rownames(ttab))),
    icc_team_profile = icc_profile(formula, d, fit)
  )
  cat(sprintf("%-15s REMLcrit %.6f singular %s  arm df %.3f\n", name, REMLcrit(fit), isSingular(fit),
              co["arm", "df"]))
}

meta <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  lmerTest = as.character(packageVersion("lmerTest")),
  nlme = as.character(packageVersion("nlme")),
  Matrix = as.character(packageVersion("Matrix")),
  optimizer = "lme4 default for lmer (nloptwrap / bobyqa), REML = TRUE",
  script = "tests/r/lmer_reference.R"
)
out <- file.path(dir, "reference.json")
writeLines(toJSON(list(meta = meta, models = results), auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
cat("wrote", out, "\n")
