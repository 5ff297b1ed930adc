/** A page renders into the main element and returns its cleanup (unsubscribe, timers). */
export interface Page {
  title: string;
  render(root: HTMLElement): () => void;
}
