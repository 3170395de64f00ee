# Reference values for cpeval.fidelity.icc_a1 / worker_service_user_agreement (tests/test_fidelity.py).
# Run from the repository root:  Rscript tests/r/fidelity_reference.R
# Reads tests/data/fidelity/icc_pairs.csv (one row per worker: the worker's CPIFS score and the mean score of
# that worker's service users) and writes tests/data/fidelity/icc_reference.csv with psych::ICC's single-rater
# ICCs and their 95 % bounds (ICC2 = ICC(A,1), two-way random, absolute agreement), plus Bland-Altman values.
suppressPackageStartupMessages(library(psych))
pairs <- read.csv("tests/data/fidelity/icc_pairs.csv")
res <- psych::ICC(pairs[, c("worker", "service_users")], lmer = FALSE)
r <- res$results
d <- pairs$worker - pairs$service_users
out <- data.frame(
  type = r$type,
  icc = r$ICC,
  lower = r$`lower bound`,
  upper = r$`upper bound`,
  stringsAsFactors = FALSE
)
out <- rbind(out, data.frame(type = "BA_bias", icc = mean(d), lower = mean(d) - 1.96 * sd(d),
                             upper = mean(d) + 1.96 * sd(d)))
write.csv(out, "tests/data/fidelity/icc_reference.csv", row.names = FALSE)
cat(sprintf("psych %s, %s\n", packageVersion("psych"), R.version.string))
print(format(out, digits = 15))
