# Reference for tests/test_fidelity.py: inter-rater ICC(A,1) ("ICC2", two-way random, absolute agreement, single
# rater) of 10 practice examples rated by 3 raters, with R psych. Recompute from the repository root:
#   Rscript tests/r/consensus_reference.R
suppressPackageStartupMessages(library(psych))
d <- read.csv("tests/data/fidelity/consensus_grid.csv")
r <- ICC(d[, c("r1", "r2", "r3")], lmer = FALSE)$results
row <- r[r$type == "ICC2", ]
out <- data.frame(icc = row$ICC, lower = row[["lower bound"]], upper = row[["upper bound"]],
                  psych = as.character(packageVersion("psych")))
write.csv(out, "tests/data/fidelity/consensus_reference.csv", row.names = FALSE)
print(out, digits = 15)
