"""What results say: a run's report and plots, fidelity metrics, where a round's time goes,
the planner's tables and plots."""
