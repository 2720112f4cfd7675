export interface BenchResult { name: string; unit: string; value: number; baseline?: number; ratio?: number; conditions: string }
