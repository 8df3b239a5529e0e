"""The course site: the executed chapter notebooks as a static HTML site.

`build_site(out)` (or `python -m rlsurvey.site --out DIR`, or `python3 course.py site`) writes the survey map
as the landing page (index.html), one page per chapter with its objectives, prerequisites and measured CPU
runtime on top and the exercises' reference solutions behind "Show solution", and the teacher's guide
(teachers.html): a 7-week syllabus, runtimes, prerequisites, and which exercises suit homework.
The survey is arXiv 2412.10400.
"""

from rlsurvey.site.build import SiteReport, build_site
from rlsurvey.site.chapters import ChapterInfo, Exercise, read_chapter, solution_sources
from rlsurvey.site.guide import SYLLABUS, syllabus_problems

__all__ = [
    "build_site",
    "SiteReport",
    "ChapterInfo",
    "Exercise",
    "read_chapter",
    "solution_sources",
    "SYLLABUS",
    "syllabus_problems",
]
