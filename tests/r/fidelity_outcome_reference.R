# Reference values for the fidelity-outcome models in tests/test_fidelity.py: within the implementation arm of the
# demo study, follow-up outcome ~ fidelity + baseline outcome + (1 | team), lme4 + lmerTest (REML, Satterthwaite).
# Recompute from the repository root:
#   python tests/make_outcomes_data.py && Rscript tests/r/fidelity_outcome_reference.R
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
dir <- "tests/data/outcomes"
out <- list()
for (outcome in c("rguk_total", "scope_overall")) {
  f <- read.csv(file.path(dir, paste0("fidelity_", outcome, ".csv")))
  for (version in c("fidelity_worker", "fidelity_service_user")) {
    d <- f[complete.cases(f[, c("y", "y0", version)]), ]
    d$fid <- d[[version]]
    m <- lmer(y ~ fid + y0 + (1 | cluster), data = d, REML = TRUE)
    s <- coef(summary(m))["fid", ]
    out[[length(out) + 1]] <- data.frame(outcome = outcome, model = version, estimate = s[["Estimate"]],
      std_error = s[["Std. Error"]], df = s[["df"]], p_value = s[["Pr(>|t|)"]], n = nrow(d),
      singular = isSingular(m))
  }
}
res <- do.call(rbind, out)
res$lme4 <- as.character(packageVersion("lme4")); res$lmerTest <- as.character(packageVersion("lmerTest"))
write.csv(res, file.path(dir, "fidelity_lmer_reference.csv"), row.names = FALSE)
print(res, digits = 10)
