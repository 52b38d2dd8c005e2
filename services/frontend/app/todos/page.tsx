import type { Metadata } from "next";
import TodoBoard from "@/components/TodoBoard";

export const metadata: Metadata = { title: "My todos · Lumina Todo" };

export default function TodosPage() {
  return <TodoBoard />;
}
