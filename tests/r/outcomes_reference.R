# Reference values for tests/test_outcomes.py: the demo study's primary (ANCOVA) and longitudinal models fitted
# with lme4 + lmerTest (REML, Satterthwaite df) on the analysis frames that cpeval builds.
# Recompute from the repository root:
#   python tests/make_outcomes_data.py && Rscript tests/r/outcomes_reference.R
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
dir <- "tests/data/outcomes"
out <- list()
for (outcome in c("rguk_total", "eq5d5l_index")) {
  a <- read.csv(file.path(dir, paste0("ancova_", outcome, ".csv")))
  a <- a[complete.cases(a[, c("y", "y0", "age", "gender")]), ]
  a$gender <- factor(a$gender)
  m <- lmer(y ~ treated + y0 + age + gender + (1 | cluster), data = a, REML = TRUE)
  s <- coef(summary(m))["treated", ]
  vc <- as.data.frame(VarCorr(m))
  out[[length(out) + 1]] <- data.frame(outcome = outcome, model = "primary", estimate = s[["Estimate"]],
    std_error = s[["Std. Error"]], df = s[["df"]], p_value = s[["Pr(>|t|)"]], n = nrow(a),
    team_var = vc$vcov[vc$grp == "cluster"], residual_var = vc$vcov[vc$grp == "Residual"],
    singular = isSingular(m))
  l <- read.csv(file.path(dir, paste0("long_", outcome, ".csv")))
  l <- l[complete.cases(l[, c("y", "age", "gender")]), ]
  l$gender <- factor(l$gender)
  m2 <- lmer(y ~ treated * follow + age + gender + (1 | cluster) + (1 | participant), data = l, REML = TRUE)
  s2 <- coef(summary(m2))["treated:follow", ]
  vc2 <- as.data.frame(VarCorr(m2))
  out[[length(out) + 1]] <- data.frame(outcome = outcome, model = "longitudinal", estimate = s2[["Estimate"]],
    std_error = s2[["Std. Error"]], df = s2[["df"]], p_value = s2[["Pr(>|t|)"]], n = nrow(l),
    team_var = vc2$vcov[vc2$grp == "cluster"], residual_var = vc2$vcov[vc2$grp == "Residual"],
    singular = isSingular(m2))
}
res <- do.call(rbind, out)
res$r_version <- paste(R.version$major, R.version$minor, sep = ".")
res$lme4 <- as.character(packageVersion("lme4"))
res$lmerTest <- as.character(packageVersion("lmerTest"))
write.csv(res, file.path(dir, "lmer_reference.csv"), row.names = FALSE)
print(res, digits = 10)
