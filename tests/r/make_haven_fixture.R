# Writes tests/data/haven_wide.sav: a small wide SPSS export made by R haven, not by cpeval or pyreadstat,
# so that tests/test_io.py checks cpeval.io against a file written by independent code.
#
# Run from the repository root (once; the .sav is committed):
#     Rscript tests/r/make_haven_fixture.R
# Made with R 4.2.2 and haven 2.5.1 (Debian r-cran-haven). tests/test_io.py::test_haven_fixture states the same values
# as below: if you change this script, re-run it and update that test.

suppressPackageStartupMessages(library(haven))

args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[[1]] else file.path("tests", "data", "haven_wide.sav")

wemwbs_labels <- c(
  "None of the time" = 1, "Rarely" = 2, "Some of the time" = 3, "Often" = 4, "All of the time" = 5,
  "Not answered" = -9, "Not applicable" = -8
)

wide <- data.frame(
  ID = c(101, 102, 103, 104),
  # value labels on a fixed variable, plus a code (3) that has no label
  ARM = labelled_spss(c(1, 2, 1, 3), labels = c(Implementation = 1, Control = 2), label = "Trial arm"),
  # user-missing -9 (discrete) declared in the file, -8 declared too
  T1_WEMWBS1 = labelled_spss(c(3, -9, 5, 2), labels = wemwbs_labels, na_values = c(-9, -8),
                             label = "Baseline: I've been feeling optimistic about the future"),
  T2_WEMWBS1 = labelled_spss(c(4, 4, -8, 1), labels = wemwbs_labels, na_values = c(-9, -8),
                             label = "Follow-up: I've been feeling optimistic about the future"),
  # user-missing as a range (SPSS "-99 THRU -90")
  T1_AGE = labelled_spss(c(34, 51, -99, 28), na_range = c(-99, -90), label = "Age at baseline"),
  # a string variable with a variable label, non-ASCII text and an empty string
  NOTES = c("lives alone", "", "caf\u00e9 twice a week", "n/a"),
  stringsAsFactors = FALSE
)
attr(wide$NOTES, "label") <- "Practitioner notes"
# ID: a plain numeric variable with a label only
attr(wide$ID, "label") <- "Participant ID"

write_sav(wide, out)
cat("wrote", out, "(", file.size(out), "bytes )\n")
