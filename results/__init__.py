"""Reading and analysing curve files: never imports torch or ray.

curves (the file contract) -> load (files to one table) -> trials (curves and configs)
-> stats, target, pareto (the numbers) -> report (all of them per config)
-> render, plots (output); logs (record logs in and out); cli (the commands).
"""
